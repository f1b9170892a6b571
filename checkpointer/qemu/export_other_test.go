// SPDX-License-Identifier: Apache-2.0

//go:build linux && !amd64

package qemu

// DropRegistration: exact tracking is amd64 only (tests needing it skip).
func DropRegistration(*Domain) {}

// BreakTracking: exact tracking is amd64 only (tests needing it skip).
func BreakTracking(*Domain) {}

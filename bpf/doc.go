// SPDX-License-Identifier: Apache-2.0

// Package bpf holds Resilire's eBPF C sources, their pinned headers and the
// bpf2go output. It has no attach logic: that belongs to package dataplane.
package bpf

// SPDX-License-Identifier: Apache-2.0

// Command mkguest builds the test guest's kernel and initramfs (make
// assets). It prints the asset paths.
package main

// SPDX-License-Identifier: Apache-2.0

// Package kernelvm runs compiled Go test binaries inside a QEMU VM (TCG)
// that boots a stock Debian kernel, so the privileged data-plane tests run
// on a kernel older than the host's: the kernel matrix of CI.
//
// The host side fetches the kernel package with apt-get download (pinned
// and sha256-checked, cached under testenv/assets/kernelvm/), compiles each
// package's tests with `go test -c` (CGO_ENABLED=0, static), and writes an
// uncompressed initramfs holding the test binaries, their testdata, the
// kernel modules the tests need (in dependency order) and the guest /init
// of ./init. The guest mounts proc, sys, devtmpfs, bpffs, debugfs, tracefs
// and tmpfs, loads the modules, runs every binary with -test.v under
// RESILIRE_TEST_PRIVILEGED=1, reports on the second serial port and powers
// off. Run parses that report into per-package pass/fail/skip counts; the
// VM is killed when the time limit passes.
package kernelvm

// SPDX-License-Identifier: Apache-2.0

// Command kernelmatrix runs the privileged data-plane tests inside a QEMU
// VM (TCG) booting Debian 12's stock 6.1 kernel (make test-kernel61). It
// prints the tests' -test.v output, then a per-package summary, and exits
// 0 only if every package passed.
//
//	go run ./testenv/kernelmatrix                       # the default tier
//	go run ./testenv/kernelmatrix -pkg ./netbuf -run 'TestHold'
package main

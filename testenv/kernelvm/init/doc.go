// SPDX-License-Identifier: Apache-2.0

// Command init is /init of the kernel-matrix VM (see package kernelvm): it
// mounts the pseudo file systems, loads the modules, runs each test binary
// of the manifest under RESILIRE_TEST_PRIVILEGED=1 with its output on the
// report serial port, and powers off.
package main

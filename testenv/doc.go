// SPDX-License-Identifier: Apache-2.0

// Package testenv holds the test rigs: privilege gating, network-namespace
// hosts, the guest VM builder and the dirty-memory trace recorder. Only
// _test.go files and bench/demo commands import it.
//
// # Skip policy
//
// A privileged test starts with RequirePrivileged: it skips without root
// (and under -short) but fails instead under RESILIRE_TEST_PRIVILEGED=1,
// which CI sets, so a broken machine never passes as a skip. Under that
// variable a test skips for one reason only: an optional kernel feature
// that a probe proves missing, through RequireFeature(tb, feature,
// probeErr) with ProbeTCX, ProbeRingPath, ProbeDynptrCopy or ProbeKfuncs;
// the skip message names the feature. Never on a kernel version number,
// and never for a path with a fallback (clsact, path redirect, the
// two-copy capture, the input log): those tests run on every kernel, and
// the kernel matrix (kernelvm, make test-kernel61) runs them on 6.1.
//
// The other skips in the tree are not about the kernel and each has a
// counterpart that runs instead: the VM-booting tests under -short, the
// Xen tests that need a dom0 (or its absence) or -tags xen, the opt-in
// destructive rig tests named by RESILIRE_XEN_DOMAIN, and the fuzz corpus
// rewriter (FGBI_WRITE_CORPUS).
package testenv

// SPDX-License-Identifier: Apache-2.0

// Package testenv holds the test rigs: privilege gating, network-namespace
// hosts, the guest VM builder and the dirty-memory trace recorder. Only
// _test.go files and bench/demo commands import it.
package testenv

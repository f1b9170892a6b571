// SPDX-License-Identifier: Apache-2.0

// Package kvload is the demo's and the end-to-end tests' client: it drives
// the guest's key-value server over one long-lived TCP connection, records
// every acknowledged write and each request's latency, checks after a
// failover that no acknowledged write was lost, and plots the latency
// timeline.
package kvload

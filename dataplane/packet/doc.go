// SPDX-License-Identifier: Apache-2.0

// Package packet is the one AF_PACKET socket of the project: the product
// sends raw frames with it (gratuitous ARP after a failover, the input log
// replayed toward a resumed guest) and the test rigs watch ports with it.
// It is a leaf package so that both the data plane and the rigs import it.
package packet

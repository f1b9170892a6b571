// SPDX-License-Identifier: Apache-2.0

package netbuf

// FNV-1a, 32 bit: cheap, allocation-free, and good enough to spread flows
// over a handful of tap queues.
const (
	fnvOffset = 2166136261
	fnvPrime  = 16777619
)

func fnv(h uint32, b []byte) uint32 {
	for _, c := range b {
		h = (h ^ uint32(c)) * fnvPrime
	}
	return h
}

// flowHash identifies the flow a frame belongs to, so that Release can
// spread frames over several tap queues while every frame of one flow goes
// through the same queue (and so keeps its capture order):
//   - TCP/UDP over IP: addresses, protocol and ports (the 5-tuple);
//   - other IP (ICMP, fragments of unknown protocol): addresses and protocol;
//   - anything else (ARP, LLDP, ...): the Ethernet header (MACs + ethertype).
func flowHash(frame []byte) uint32 {
	l4 := parseL4(frame)
	if l4.l3 == 0 {
		n := min(len(frame), 14)
		return fnv(fnvOffset, frame[:n])
	}
	var addrs []byte
	if l4.ipv4 {
		addrs = frame[l4.l3+12 : l4.l3+20]
	} else {
		addrs = frame[l4.l3+8 : l4.l3+40]
	}
	h := fnv(fnvOffset, addrs)
	h = (h ^ uint32(l4.ipNext)) * fnvPrime
	if l4.proto != 0 {
		h = fnv(h, frame[l4.off:l4.off+4])
	}
	return h
}

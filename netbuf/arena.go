// SPDX-License-Identifier: Apache-2.0

package netbuf

import "slices"

// chunkSize is the unit of arena memory. A stored frame (virtio-net header
// plus at most MaxFrameLen bytes) always fits in one chunk.
const chunkSize = 1 << 20

// refOverhead is what one held frame costs besides its bytes (its frameRef),
// charged against the byte bound so that tiny frames cannot exceed it.
const refOverhead = 48

// maxFreeChunks bounds the chunks kept for reuse after a release.
const maxFreeChunks = 64

// frameRef is one held frame: data is the virtio-net header followed by the
// Ethernet frame, ready to be written to the tap as is.
type frameRef struct {
	data   []byte
	tstamp int64  // CLOCK_MONOTONIC ns at capture
	hash   uint32 // flow hash, picks the release queue
}

// arena holds the frames of one epoch in capture order.
type arena struct {
	epoch  uint64
	frames []frameRef
	chunks [][]byte
	bytes  int64 // charged bytes (data + refOverhead per frame)
}

// arenas is the ordered set of open and closed, unreleased epochs, with a
// free list of chunks. It is not safe for concurrent use (Buffer.mu).
type arenas struct {
	list []*arena // ascending epoch
	free [][]byte
}

// get returns the arena for epoch, creating it in order if needed.
func (as *arenas) get(epoch uint64) *arena {
	n := len(as.list)
	if n > 0 && as.list[n-1].epoch == epoch {
		return as.list[n-1]
	}
	i, found := slices.BinarySearchFunc(as.list, epoch, func(a *arena, e uint64) int {
		switch {
		case a.epoch < e:
			return -1
		case a.epoch > e:
			return 1
		}
		return 0
	})
	if found {
		return as.list[i]
	}
	a := &arena{epoch: epoch}
	as.list = slices.Insert(as.list, i, a)
	return a
}

// reserve returns n writable bytes at the end of a's last chunk, starting
// a new chunk when needed. The caller fills them and calls commit.
func (as *arenas) reserve(a *arena, n int) []byte {
	if k := len(a.chunks); k > 0 {
		if c := a.chunks[k-1]; cap(c)-len(c) >= n {
			return c[len(c) : len(c)+n]
		}
	}
	var c []byte
	if k := len(as.free); k > 0 {
		c, as.free = as.free[k-1][:0], as.free[:k-1]
	} else {
		c = make([]byte, 0, chunkSize)
	}
	a.chunks = append(a.chunks, c)
	return c[:n]
}

// commit appends the first n reserved bytes as a frame.
func (as *arenas) commit(a *arena, n int, tstamp int64, hash uint32) {
	k := len(a.chunks) - 1
	c := a.chunks[k]
	a.chunks[k] = c[:len(c)+n]
	a.frames = append(a.frames, frameRef{data: c[len(c) : len(c)+n : len(c)+n], tstamp: tstamp, hash: hash})
	a.bytes += int64(n) + refOverhead
}

// take removes and returns the arenas of epochs <= e, oldest first.
func (as *arenas) take(e uint64) []*arena {
	i := 0
	for i < len(as.list) && as.list[i].epoch <= e {
		i++
	}
	out := slices.Clone(as.list[:i])
	as.list = slices.Delete(as.list, 0, i)
	return out
}

// recycle returns the chunks of released arenas to the free list.
func (as *arenas) recycle(list []*arena) {
	for _, a := range list {
		for _, c := range a.chunks {
			if len(as.free) >= maxFreeChunks {
				return
			}
			as.free = append(as.free, c)
		}
	}
}

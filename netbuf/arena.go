// SPDX-License-Identifier: Apache-2.0

package netbuf

import "slices"

// chunkSize is the unit of arena memory. The reader lands records in the
// free tail of one chunk at a time and starts a new chunk when the tail
// could not take the largest record (so a ring record never misses).
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

// chunk is arena memory shared by the epochs whose frames landed in it
// (records of two epochs can interleave in the ring). refs counts the
// arenas holding frames in it, plus one while it is the landing chunk; at
// zero it goes back to the free list. Guarded by Buffer.mu.
type chunk struct {
	buf  []byte // chunkSize bytes
	refs int
}

// arena holds the frames of one epoch in capture order.
type arena struct {
	epoch  uint64
	frames []frameRef
	chunks []*chunk // chunks its frames lie in, each once
	bytes  int64    // charged bytes (data + refOverhead per frame)
}

// arenas is the ordered set of open and closed, unreleased epochs, with a
// free list of chunks. It is not safe for concurrent use (Buffer.mu).
type arenas struct {
	list []*arena // ascending epoch
	free []*chunk
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

// newChunk returns a chunk with one reference (the landing's).
func (as *arenas) newChunk() *chunk {
	if k := len(as.free); k > 0 {
		c := as.free[k-1]
		as.free = as.free[:k-1]
		c.refs = 1
		return c
	}
	return &chunk{buf: make([]byte, chunkSize), refs: 1}
}

// unref drops one reference to c, recycling it at zero.
func (as *arenas) unref(c *chunk) {
	if c.refs--; c.refs == 0 && len(as.free) < maxFreeChunks {
		as.free = append(as.free, c)
	}
}

// add appends f, whose data lies in c (nil: memory of its own), to a.
// Landing only moves forward, so c is either a's last chunk or new to a.
func (as *arenas) add(a *arena, f frameRef, c *chunk) {
	if c != nil && (len(a.chunks) == 0 || a.chunks[len(a.chunks)-1] != c) {
		a.chunks = append(a.chunks, c)
		c.refs++
	}
	a.frames = append(a.frames, f)
	a.bytes += int64(len(f.data)) + refOverhead
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

// recycle drops released arenas' references to their chunks.
func (as *arenas) recycle(list []*arena) {
	for _, a := range list {
		for _, c := range a.chunks {
			as.unref(c)
		}
	}
}

// landing is the free tail of the chunk the reader fills next. It belongs
// to the reader (path A's goroutine; path B's reader or drain, under the
// source's read lock): only the reader writes past pos, and everything
// before pos is immutable frames, so readers of held frames never race it.
type landing struct {
	c   *chunk
	pos int
}

// reserve returns n bytes with capacity want (n <= want <= chunkSize) at
// the landing point, starting a new chunk if the tail is shorter than want.
// The caller fills them; advance keeps them, else the next reserve reuses
// them.
func (l *landing) reserve(b *Buffer, n, want int) ([]byte, *chunk) {
	if l.c == nil || len(l.c.buf)-l.pos < want {
		b.mu.Lock()
		if l.c != nil {
			b.ar.unref(l.c)
		}
		l.c, l.pos = b.ar.newChunk(), 0
		b.mu.Unlock()
	}
	return l.c.buf[l.pos : l.pos+n : l.pos+want], l.c
}

func (l *landing) advance(n int) { l.pos += n }

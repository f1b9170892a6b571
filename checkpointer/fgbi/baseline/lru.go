// SPDX-License-Identifier: Apache-2.0

package baseline

// lru is a page cache with least-recently-used eviction (Xen's), slots in
// one arena and an intrusive doubly linked list.
type lru struct {
	mem        []byte
	slot       map[uint64]int32
	pfn        []uint64
	prev, next []int32
	head, tail int32 // most and least recently used; -1 when empty
	used       int
}

func newLRU(pages int) *lru {
	c := &lru{mem: make([]byte, pages*PageSize), slot: make(map[uint64]int32, pages),
		pfn: make([]uint64, pages), prev: make([]int32, pages), next: make([]int32, pages), head: -1, tail: -1}
	return c
}

func (c *lru) page(i int32) []byte { return c.mem[int(i)*PageSize : int(i+1)*PageSize] }

// get returns the cached copy of pfn (marking it most recent), or nil.
func (c *lru) get(pfn uint64) []byte {
	i, ok := c.slot[pfn]
	if !ok {
		return nil
	}
	c.unlink(i)
	c.pushFront(i)
	return c.page(i)
}

// put returns a slot for pfn (not cached), evicting the least recent.
func (c *lru) put(pfn uint64) []byte {
	var i int32
	if c.used < len(c.pfn) {
		i = int32(c.used)
		c.used++
	} else {
		i = c.tail
		c.unlink(i)
		delete(c.slot, c.pfn[i])
	}
	c.pfn[i] = pfn
	c.slot[pfn] = i
	c.pushFront(i)
	return c.page(i)
}

func (c *lru) unlink(i int32) {
	p, n := c.prev[i], c.next[i]
	if p >= 0 {
		c.next[p] = n
	} else {
		c.head = n
	}
	if n >= 0 {
		c.prev[n] = p
	} else {
		c.tail = p
	}
}

func (c *lru) pushFront(i int32) {
	c.prev[i], c.next[i] = -1, c.head
	if c.head >= 0 {
		c.prev[c.head] = i
	}
	c.head = i
	if c.tail < 0 {
		c.tail = i
	}
}

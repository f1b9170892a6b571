// SPDX-License-Identifier: Apache-2.0

package checkpointer

import "testing"

// TestCapBufFit: after one full checkpoint of a 128 MiB guest, the capture
// buffer goes back to a few MiB once epochs are small again, and it never
// drops below what a recent epoch needed.
func TestCapBufFit(t *testing.T) {
	const full, small = 128 << 20, 1 << 20
	var b capBuf
	use := func(n int) { // what capture does
		b.fit()
		if cap(b.data) < n {
			b.data = make([]byte, n)
		}
		b.data = b.data[:n]
		b.high = max(b.high, n)
	}
	use(full)
	epochs := 0
	for ; cap(b.data) > 2*minCapBuf; epochs++ {
		if epochs == 40 {
			t.Fatalf("after %d small epochs the buffer still holds %d MiB", epochs, cap(b.data)>>20)
		}
		use(small)
	}
	t.Logf("back to %d MiB after %d epochs", cap(b.data)>>20, epochs)
	if epochs < 8 {
		t.Errorf("shrunk after %d epochs: a burst would reallocate at once", epochs)
	}
	// A burst of 16 MiB every 10 epochs keeps its buffer: no reallocation
	// inside the pause at each burst.
	use(16 << 20)
	for i := range 30 {
		n := small
		if i%10 == 9 {
			n = 16 << 20
		}
		before := cap(b.data)
		use(n)
		if i%10 == 9 && cap(b.data) != before {
			t.Fatalf("burst %d reallocated (%d -> %d MiB)", i/10, before>>20, cap(b.data)>>20)
		}
	}
}

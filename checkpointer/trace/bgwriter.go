// SPDX-License-Identifier: Apache-2.0

package trace

import "sync"

// bgWriter compresses and writes epochs on its own goroutine, so the traced
// process's run time between two pauses is not stretched by the writing
// (epoch 0 of a large process takes far longer to compress than an
// interval). At most queueDepth epochs wait; beyond that put blocks.
type bgWriter struct {
	w    *Writer
	ch   chan pendingEpoch
	done chan struct{}
	mu   sync.Mutex
	err  error
}

const queueDepth = 4

type pendingEpoch struct {
	pfns []uint64
	data *pagebuf
}

func newBgWriter(w *Writer) *bgWriter {
	b := &bgWriter{w: w, ch: make(chan pendingEpoch, queueDepth), done: make(chan struct{})}
	go b.run()
	return b
}

func (b *bgWriter) run() {
	defer close(b.done)
	for p := range b.ch {
		if b.failed() == nil {
			if err := b.w.WriteEpoch(p.pfns, p.data.b[:len(p.pfns)*PageSize]); err != nil {
				b.mu.Lock()
				b.err = err
				b.mu.Unlock()
			}
		}
		p.data.free()
	}
}

func (b *bgWriter) failed() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.err
}

// put queues an epoch; data is freed once written. It returns the first
// write error seen so far, if any.
func (b *bgWriter) put(pfns []uint64, data *pagebuf) error {
	if err := b.failed(); err != nil {
		data.free()
		return err
	}
	b.ch <- pendingEpoch{pfns, data}
	return nil
}

// finish waits until every queued epoch is written and returns the first
// write error. It must be called exactly once.
func (b *bgWriter) finish() error {
	close(b.ch)
	<-b.done
	return b.failed()
}

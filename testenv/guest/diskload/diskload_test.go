// SPDX-License-Identifier: Apache-2.0

package diskload

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestLastWrote(t *testing.T) {
	c := []byte("boot\r\nWROTE 1\r\nWROTE 2\nnoise WROTE 9\nWROTE 12\r\nWROTE 1")
	if n := LastWrote(c); n != 12 {
		t.Fatalf("LastWrote = %d, want 12", n)
	}
}

func TestRunWritesKnownFiles(t *testing.T) {
	dir := t.TempDir()
	var out bytes.Buffer
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, dir, &out, time.Millisecond) }()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := os.Stat(filepath.Join(dir, Name(3))); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no third file")
		}
		time.Sleep(time.Millisecond)
	}
	b, err := os.ReadFile(filepath.Join(dir, Name(2)))
	if err != nil || !bytes.Equal(b, Content(2)) || bytes.Equal(Content(2), Content(3)) {
		t.Fatalf("file 2: %v", err)
	}
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("the writer ended with %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the writer did not stop")
	}
}

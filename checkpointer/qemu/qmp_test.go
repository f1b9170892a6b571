// SPDX-License-Identifier: Apache-2.0

package qemu

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// fakeQMP is a QMP server speaking just enough of the protocol for the
// device-state paths: getfd (with SCM_RIGHTS), migrate (writes the blob to
// the passed fd), migrate-incoming (reads it), and MIGRATION events.
type fakeQMP struct {
	blob     []byte      // what migrate writes
	fail     bool        // report the migration as failed
	incoming chan []byte // what migrate-incoming read
}

func startFakeQMP(t *testing.T, f *fakeQMP) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "qmp")
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		c, err := l.AcceptUnix()
		if err != nil {
			return
		}
		defer c.Close()
		f.serve(c)
	}()
	return path
}

func (f *fakeQMP) serve(c *net.UnixConn) {
	// A failed write is the client hanging up, which the test sees itself.
	send := func(v any) { b, _ := json.Marshal(v); _, _ = c.Write(append(b, '\n')) }
	event := func(status string) {
		send(map[string]any{"event": "MIGRATION", "data": map[string]any{"status": status}})
	}
	send(map[string]any{"QMP": map[string]any{"version": map[string]any{}, "capabilities": []string{"oob"}}})
	fds := map[string]*os.File{}
	var lastFD *os.File
	buf := make([]byte, 64<<10)
	oob := make([]byte, unix.CmsgSpace(4))
	for {
		n, oobn, _, _, err := c.ReadMsgUnix(buf, oob)
		if err != nil {
			return
		}
		if oobn > 0 {
			msgs, _ := unix.ParseSocketControlMessage(oob[:oobn])
			if len(msgs) == 1 {
				if got, err := unix.ParseUnixRights(&msgs[0]); err == nil && len(got) == 1 {
					lastFD = os.NewFile(uintptr(got[0]), "passed")
				}
			}
		}
		dec := json.NewDecoder(bytes.NewReader(buf[:n]))
		for {
			var cmd struct {
				Execute   string         `json:"execute"`
				Arguments map[string]any `json:"arguments"`
			}
			if err := dec.Decode(&cmd); err != nil {
				break
			}
			switch cmd.Execute {
			case "getfd":
				if lastFD == nil {
					send(map[string]any{"error": map[string]any{"class": "GenericError", "desc": "No file descriptor supplied via SCM_RIGHTS"}})
					continue
				}
				name, _ := cmd.Arguments["fdname"].(string)
				fds[name], lastFD = lastFD, nil
			case "migrate", "migrate-incoming":
				uri, _ := cmd.Arguments["uri"].(string)
				fd := fds[strings.TrimPrefix(uri, "fd:")]
				if fd == nil {
					send(map[string]any{"error": map[string]any{"class": "GenericError", "desc": "unknown fd"}})
					continue
				}
				send(map[string]any{"return": map[string]any{}})
				event("setup")
				if cmd.Execute == "migrate" {
					_, _ = fd.Write(f.blob) // the reader checks what arrived
				} else {
					b, _ := io.ReadAll(fd)
					f.incoming <- b
				}
				fd.Close()
				if f.fail {
					event("failed")
				} else {
					event("active")
					event("completed")
				}
				continue
			}
			send(map[string]any{"return": map[string]any{}})
		}
	}
}

func TestSaveRestoreStateOverFakeQMP(t *testing.T) {
	f := &fakeQMP{blob: bytes.Repeat([]byte("device-state "), 40000), incoming: make(chan []byte, 1)}
	mon, err := dialMonitor(startFakeQMP(t, f), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer mon.close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := mon.setupMigration(ctx); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ { // repeated saves reuse the fd name
		got, err := saveState(ctx, mon)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, f.blob) {
			t.Fatalf("save %d: got %d bytes, want %d", i, len(got), len(f.blob))
		}
	}
	if err := restoreState(ctx, mon, f.blob); err != nil {
		t.Fatal(err)
	}
	if in := <-f.incoming; !bytes.Equal(in, f.blob) {
		t.Fatalf("restore fed %d bytes, want %d", len(in), len(f.blob))
	}
}

func TestSaveStateMigrationFailed(t *testing.T) {
	f := &fakeQMP{blob: []byte("partial"), fail: true}
	mon, err := dialMonitor(startFakeQMP(t, f), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer mon.close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := saveState(ctx, mon); !errors.Is(err, ErrMigration) {
		t.Fatalf("failed migration: err = %v, want ErrMigration", err)
	}
}

// TestWaitMigrationQEMUGone checks that a QEMU dying mid-migration ends the
// wait with an error instead of hanging.
func TestWaitMigrationQEMUGone(t *testing.T) {
	path := filepath.Join(t.TempDir(), "qmp")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		fmt.Fprintln(c, `{"QMP":{"version":{},"capabilities":["oob"]}}`)
		_, _ = bufio.NewReader(c).ReadString('\n') // qmp_capabilities, whatever it says
		fmt.Fprintln(c, `{"return":{}}`)
		time.Sleep(50 * time.Millisecond)
		c.Close()
	}()
	mon, err := dialMonitor(path, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer mon.close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := mon.waitMigration(ctx); !errors.Is(err, ErrMigration) {
		t.Fatalf("err = %v, want ErrMigration", err)
	}
}

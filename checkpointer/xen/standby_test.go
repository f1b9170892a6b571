// SPDX-License-Identifier: Apache-2.0

package xen

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// newTestStandby fills a replica with the test memory. The restore command
// is a shell script standing in for `xl restore`: it copies the image it is
// given and records its arguments.
func newTestStandby(t *testing.T, pipe bool, script string) (*Standby, []byte, *State, string) {
	t.Helper()
	mem, st := testReplica(t)
	r, err := NewReplica(uint64(len(mem)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	copy(r.Memory(), mem)
	dir := t.TempDir()
	s, err := NewStandby(r, StandbyOptions{
		Command:   []string{"/bin/sh", "-c", script, "fake-xl", "restore", "/etc/resilire/guest.cfg", ImagePlaceholder},
		ImagePath: filepath.Join(dir, "guest.xl"),
		Pipe:      pipe,
	})
	if err != nil {
		t.Fatal(err)
	}
	return s, mem, st, dir
}

func TestStandbyActivate(t *testing.T) {
	for _, pipe := range []bool{false, true} {
		t.Run(map[bool]string{false: "file", true: "pipe"}[pipe], func(t *testing.T) {
			// $0=fake-xl $1=restore $2=cfg $3=image; cwd is the test's.
			s, mem, st, dir := newTestStandby(t, pipe, `cat "$3" > "$OUT/restored" && echo "$@" > "$OUT/args"`)
			t.Setenv("OUT", dir)
			if err := s.Activate(context.Background(), st.Encode()); err != nil {
				t.Fatal(err)
			}
			got, err := os.ReadFile(filepath.Join(dir, "restored"))
			if err != nil {
				t.Fatal(err)
			}
			var want bytes.Buffer
			if err := WriteXLImage(&want, mem, st, nil); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want.Bytes()) {
				t.Fatalf("restore command got %d bytes, want the %d-byte xl image", len(got), want.Len())
			}
			args, _ := os.ReadFile(filepath.Join(dir, "args"))
			image := filepath.Join(dir, "guest.xl")
			if pipe {
				image = "/dev/stdin"
			}
			if strings.TrimSpace(string(args)) != "restore /etc/resilire/guest.cfg "+image {
				t.Fatalf("args %q", args)
			}
			if err := s.Activate(context.Background(), st.Encode()); !errors.Is(err, ErrActivated) {
				t.Fatalf("second activation: %v", err)
			}
		})
	}
}

func TestStandbyActivateFailures(t *testing.T) {
	s, _, st, _ := newTestStandby(t, false, `echo "libxl: error: domain creation failed" >&2; exit 3`)
	err := s.Activate(context.Background(), st.Encode())
	if err == nil || !strings.Contains(err.Error(), "domain creation failed") {
		t.Fatalf("failing command: %v", err)
	}
	s, _, _, dir := newTestStandby(t, false, `exit 0`)
	if err := s.Activate(context.Background(), []byte("garbage")); !errors.Is(err, ErrBadState) {
		t.Fatalf("bad state: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "guest.xl")); !os.IsNotExist(err) {
		t.Fatalf("image written for a bad state: %v", err)
	}
	// State from a different memory map than the replica holds.
	s, _, st, _ = newTestStandby(t, true, `cat > /dev/null`)
	st.Extents = append(st.Extents, Extent{0x200000, 1})
	if err := s.Activate(context.Background(), st.Encode()); !errors.Is(err, ErrBadState) {
		t.Fatalf("state with a memory map larger than the replica: %v", err)
	}
	if _, err := NewStandby(nil, StandbyOptions{}); err == nil {
		t.Fatal("standby without a command accepted")
	}
}

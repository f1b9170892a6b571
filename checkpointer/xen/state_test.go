// SPDX-License-Identifier: Apache-2.0

package xen

import (
	"errors"
	"reflect"
	"slices"
	"syscall"
	"testing"
)

func TestStateRoundTrip(t *testing.T) {
	_, st := testReplica(t)
	got, err := DecodeState(st.Encode())
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, st) {
		t.Fatalf("decoded %+v, want %+v", got, st)
	}
	b := st.Encode()
	for _, n := range []int{0, 7, 20, len(b) - 1} {
		if _, err := DecodeState(b[:n]); !errors.Is(err, ErrBadState) {
			t.Fatalf("truncated to %d: %v", n, err)
		}
	}
	if _, err := DecodeState(append(b, 0)); !errors.Is(err, ErrBadState) {
		t.Fatalf("trailing byte: %v", err)
	}
}

func FuzzDecodeState(f *testing.F) {
	_, st := testReplica(f)
	f.Add(st.Encode())
	f.Add((&State{Extents: []Extent{{0, 1}}, HVMContext: []byte{1}}).Encode())
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := DecodeState(b)
		if err != nil {
			return
		}
		again, err := DecodeState(s.Encode())
		if err != nil || !reflect.DeepEqual(again, s) {
			t.Fatalf("re-encode changed the state: %v", err)
		}
	})
}

func TestLayout(t *testing.T) {
	l, err := NewLayout([]Extent{{0, 4}, {4, 2}, {10, 3}})
	if err != nil {
		t.Fatal(err)
	}
	if want := []Extent{{0, 6}, {10, 3}}; !slices.Equal(l.Extents(), want) || l.Pages() != 9 {
		t.Fatalf("extents %v pages %d", l.Extents(), l.Pages())
	}
	for dense := uint64(0); dense < l.Pages(); dense++ {
		g, ok := l.GPFN(dense)
		back, ok2 := l.Index(g)
		if !ok || !ok2 || back != dense {
			t.Fatalf("dense %d -> gpfn %d -> %d", dense, g, back)
		}
	}
	for _, hole := range []uint64{6, 9, 13, 1 << 40} {
		if _, ok := l.Index(hole); ok {
			t.Fatalf("hole %d mapped", hole)
		}
	}
	if _, ok := l.GPFN(9); ok {
		t.Fatal("dense page past the end mapped")
	}
	for _, bad := range [][]Extent{{{5, 0}}, {{5, 2}, {6, 1}}, {{9, 1}, {2, 1}}, {{^uint64(0), 2}}} {
		if _, err := NewLayout(bad); err == nil {
			t.Fatalf("layout %v accepted", bad)
		}
	}
}

func TestOpErrorMessages(t *testing.T) {
	for _, tc := range []struct {
		err  *OpError
		want string
		is   error
	}{
		{NewOpError(OpSuspend, 7, syscall.ESRCH), "suspend request: domain 7 not found", ErrNoDomain},
		{NewOpError(OpEnableDirty, 3, syscall.EBUSY), "enable log-dirty: domain 3: log-dirty already enabled by another tool", ErrLogDirtyBusy},
		{NewOpError(OpMapFrames, 3, syscall.EBUSY), "map frames: domain 3: device or resource busy", syscall.EBUSY},
		{NewOpError(OpOpen, 0, syscall.ENOENT), "open libxc: no xen hypervisor here", ErrNoXen},
		{NewOpError(OpHVMContext, 2, syscall.EPERM), "get hvm context: domain 2: not permitted", ErrPermission},
	} {
		if got := tc.err.Error(); len(got) < len(tc.want) || got[:len(tc.want)] != tc.want {
			t.Errorf("message %q, want prefix %q", got, tc.want)
		}
		if !errors.Is(tc.err, tc.is) || !errors.Is(tc.err, tc.err.Errno) {
			t.Errorf("%v does not unwrap to %v and its errno", tc.err, tc.is)
		}
	}
}

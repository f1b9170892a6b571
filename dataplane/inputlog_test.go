// SPDX-License-Identifier: Apache-2.0

package dataplane

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/resilire/resilire/bpf"
	"github.com/resilire/resilire/testenv"
)

// TestClassifyMissingKfunc: cilium/ebpf reports a kfunc the kernel lacks
// as `kfunc "x": not supported` (btf.ErrNotSupported is ebpf's). That is a
// missing feature, not a kernel without BTF: the error says so and names
// the kfunc.
func TestClassifyMissingKfunc(t *testing.T) {
	err := classify(fmt.Errorf("load program: kfunc %q: %w", kernCtxKfunc, ebpf.ErrNotSupported))
	if errors.Is(err, ErrNoBTF) || !errors.Is(err, ErrKernelTooOld) || !errors.Is(err, ebpf.ErrNotSupported) ||
		!strings.Contains(err.Error(), kernCtxKfunc) {
		t.Fatalf("classify: %v, want ErrKernelTooOld and ebpf.ErrNotSupported naming %s, not ErrNoBTF", err, kernCtxKfunc)
	}
}

// withoutKernCtx makes the package see a kernel with BTF but without the
// bpf_cast_to_kern_ctx kfunc (Debian 12's 6.1) for the rest of the test.
func withoutKernCtx(t *testing.T) {
	orig := kfuncSupport
	kfuncSupport = func(name, since string) error {
		if name == kernCtxKfunc {
			return fmt.Errorf("no kfunc %s in the kernel (Linux >= %s): %w: %w", name, since, ebpf.ErrNotSupported, ErrKernelTooOld)
		}
		return orig(name, since)
	}
	t.Cleanup(func() { kfuncSupport = orig })
}

// wantMissingKfunc checks that err names the kfunc and not missing BTF.
func wantMissingKfunc(t *testing.T, what string, err error) {
	t.Helper()
	if err == nil || errors.Is(err, ErrNoBTF) || !errors.Is(err, ebpf.ErrNotSupported) || !strings.Contains(err.Error(), kernCtxKfunc) {
		t.Errorf("%s: %v, want an ebpf.ErrNotSupported naming %s, not ErrNoBTF", what, err, kernCtxKfunc)
	}
}

// TestProbeWithoutKernCtx: without the kfunc, Probe names it as the reason
// for path ring and picks path redirect and the portable input log.
func TestProbeWithoutKernCtx(t *testing.T) {
	withoutKernCtx(t)
	f := Probe()
	wantMissingKfunc(t, "probe kern-ctx", f.KernCtx)
	wantMissingKfunc(t, "probe ring", f.Ring)
	if f.Path() != PathRedirect || f.InputLog() != InputLogPortable {
		t.Errorf("auto picks path %s, input log %s; want redirect, portable", f.Path(), f.InputLog())
	}
	_, err := resolveInputLog(InputLogKernCtx)
	wantMissingKfunc(t, "forced kern-ctx input log", err)
}

// TestInputLogWithoutKernCtx: on a kernel without the kfunc, --input-log
// attaches the portable input log on path redirect (the Debian 12 dom0
// case), its records say FrameMetaUnknown, and Open accepts the pinned
// programs. Forcing path ring or the kern-ctx input log fails naming the
// kfunc.
func TestInputLogWithoutKernCtx(t *testing.T) {
	withoutKernCtx(t)
	e, recs := testInputLog(t, Options{InputLog: true, Attach: AttachClsact})
	if e.port.Path() != PathRedirect || e.port.InputLogKind() != InputLogPortable {
		t.Fatalf("attached path %s, input log %s; want redirect, portable", e.port.Path(), e.port.InputLogKind())
	}
	for _, r := range recs {
		if r.Hdr.Flags != FrameMetaUnknown || r.Hdr.IpSummed != 0 {
			t.Fatalf("portable record flags %#x ip_summed %d, want %#x, 0", r.Hdr.Flags, r.Hdr.IpSummed, FrameMetaUnknown)
		}
	}
	var p *Port
	e.inHost(func() (err error) { p, err = Open(e.port.Name(), e.pinRoot, nil); return err })
	if k := p.InputLogKind(); k != InputLogPortable {
		t.Errorf("reopened input log %s, want portable", k)
	}
	p.Close()
	for _, opts := range []Options{{Path: PathRing}, {Path: PathRedirect, InputLog: true, InputLogKind: InputLogKernCtx}} {
		opts.Name, opts.Port, opts.PinRoot = "rdp-kf", e.rig.Port, e.pinRoot
		var err error
		e.inHost(func() error { _, err = Attach(opts); return nil })
		wantMissingKfunc(t, fmt.Sprintf("attach %s input log %v %s", opts.Path, opts.InputLog, opts.InputLogKind), err)
	}
}

// TestInputLogProg: both input-log programs log each frame with its epoch
// and pass it, with either capture path loaded; a full ring is counted,
// never a drop. The portable one marks its records FrameMetaUnknown; the
// kern-ctx one reads ip_summed (and needs the kfunc).
func TestInputLogProg(t *testing.T) {
	for _, kind := range []InputLogKind{InputLogKernCtx, InputLogPortable} {
		for _, path := range []CapturePath{PathRing, PathRedirect} {
			t.Run(kind.String()+"/"+path.String(), func(t *testing.T) { testInputLogProg(t, kind, path) })
		}
	}
}

func testInputLogProg(t *testing.T, kind InputLogKind, path CapturePath) {
	if kind == InputLogKernCtx {
		testenv.RequireFeature(t, "kern-ctx input log: kfunc "+kernCtxKfunc+" (Linux 6.2)", testenv.ProbeKfuncs(kernCtxKfunc))
	}
	objs := loadWithInputLog(t, path, 4096, ModeBuffer, 9, kind)
	frame := udpFrame(t, 1000, 7)
	const runs = 10
	for i := 0; i < runs; i++ {
		if v, _ := run(t, objs.progs[progInputLog], frame, newSkbCtx(t)); v != tcActOK {
			t.Fatalf("input log verdict %d, want OK even when the log is full", v)
		}
	}
	c := counters(t, objs)
	if c.InputLogged == 0 || c.InputLogFull == 0 || c.InputLogged+c.InputLogFull != runs {
		t.Errorf("logged %d + full %d, want both > 0 summing to %d", c.InputLogged, c.InputLogFull, runs)
	}
	wantFlags := uint8(0)
	if kind == InputLogPortable {
		wantFlags = FrameMetaUnknown
	}
	for _, r := range readRecords(t, objs.maps[mapInputRing], int(c.InputLogged)) {
		if r.Hdr.Epoch != 9 || !bytes.Equal(r.Frame, frame) || r.Hdr.Flags != wantFlags {
			t.Errorf("input record epoch %d flags %#x, frame equal %v; want epoch 9 flags %#x",
				r.Hdr.Epoch, r.Hdr.Flags, bytes.Equal(r.Frame, frame), wantFlags)
		}
	}
}

// TestInputLogPortableNoKfunc: the portable input log calls no kfunc, so
// it loads on kernels without bpf_cast_to_kern_ctx (Debian 12's 6.1); the
// kern-ctx one does call it (the check sees kfunc calls).
func TestInputLogPortableNoKfunc(t *testing.T) {
	spec, err := bpf.LoadInputlog()
	if err != nil {
		t.Fatal(err)
	}
	for kind, want := range map[InputLogKind]bool{InputLogPortable: false, InputLogKernCtx: true} {
		v, err := inputLogViewOf(kind)
		if err != nil {
			t.Fatal(err)
		}
		name := ebpfTag(t, v, "InputLog")
		if spec.Programs[name] == nil {
			t.Fatalf("%s: the view names program %q, not in the object", kind, name)
		}
		got := false
		for _, ins := range spec.Programs[name].Instructions {
			got = got || ins.IsKfuncCall()
		}
		if got != want {
			t.Errorf("%s input log calls a kfunc: %v, want %v", kind, got, want)
		}
	}
}

// ebpfTag returns the ebpf struct tag of v's field (v a pointer to a view).
func ebpfTag(t *testing.T, v any, field string) string {
	t.Helper()
	f, ok := reflect.TypeOf(v).Elem().FieldByName(field)
	if !ok {
		t.Fatalf("%T has no field %s", v, field)
	}
	return f.Tag.Get("ebpf")
}

// SPDX-License-Identifier: Apache-2.0

package dataplane

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net"
	"os"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/ringbuf"
	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/resilire/resilire/bpf"
	"github.com/resilire/resilire/testenv"
)

// tc verdicts (include/uapi/linux/pkt_cls.h).
const (
	tcActOK       = 0
	tcActShot     = 2
	tcActRedirect = 7
)

const testMagic = 0x5a5a1234

// loadForTest loads path's objects (with the input log) and writes a config.
func loadForTest(t *testing.T, path CapturePath, ringBytes int, mode Mode, epoch uint64) *objects {
	return loadForTestTB(t, path, ringBytes, mode, epoch)
}

func loadForTestTB(t testing.TB, path CapturePath, ringBytes int, mode Mode, epoch uint64) *objects {
	kind, err := resolveInputLog(InputLogAuto) // the input log this kernel runs
	if err != nil {
		t.Fatal(err)
	}
	return loadWithInputLog(t, path, ringBytes, mode, epoch, kind)
}

// loadWithInputLog is loadForTest with the input log of kind.
func loadWithInputLog(t testing.TB, path CapturePath, ringBytes int, mode Mode, epoch uint64, kind InputLogKind) *objects {
	t.Helper()
	requireFor(t, path, AttachAuto)
	objs, err := loadObjects(path, ringSize(ringBytes), kind, nil)
	if err != nil {
		t.Fatalf("load %v: %v", path, err)
	}
	t.Cleanup(objs.close)
	c := bpf.CapturePortConfig{Epoch: epoch, Mode: bpf.CaptureMode(mode), Magic: testMagic, PortIfindex: 1, TapIfindex: 1,
		InputLog: bpf.CaptureInputLogKind(kind), Egress: bpf.CaptureInputLogKind(kind)}
	if err := objs.maps[mapConfig].Update(uint32(0), &c, ebpf.UpdateAny); err != nil {
		t.Fatal(err)
	}
	return objs
}

// udpFrame builds an Ethernet/IPv4/UDP frame of exactly size bytes whose
// payload starts with seq.
func udpFrame(t testing.TB, size int, seq uint32) []byte {
	t.Helper()
	return frameFor(t, net.HardwareAddr{2, 0, 0, 0, 0, 2}, net.HardwareAddr{2, 0, 0, 0, 0, 3}, net.IP{10, 0, 0, 2}, net.IP{10, 0, 0, 3}, size, seq)
}

// frameFor builds an Ethernet/IPv4/UDP (4000 -> 5000) frame of exactly size
// bytes whose payload starts with seq.
func frameFor(t testing.TB, src, dst net.HardwareAddr, srcIP, dstIP net.IP, size int, seq uint32) []byte {
	t.Helper()
	const hdrs = 14 + 20 + 8
	payload := make([]byte, size-hdrs)
	binary.BigEndian.PutUint32(payload, seq)
	eth := &layers.Ethernet{SrcMAC: src, DstMAC: dst, EthernetType: layers.EthernetTypeIPv4}
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: srcIP, DstIP: dstIP}
	udp := &layers.UDP{SrcPort: 4000, DstPort: 5000}
	if err := udp.SetNetworkLayerForChecksum(ip); err != nil {
		t.Fatal(err)
	}
	buf := gopacket.NewSerializeBuffer()
	opts := gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}
	if err := gopacket.SerializeLayers(buf, opts, eth, ip, udp, gopacket.Payload(payload)); err != nil {
		t.Fatal(err)
	}
	if len(buf.Bytes()) != size {
		t.Fatalf("frame is %d bytes, want %d", len(buf.Bytes()), size)
	}
	return buf.Bytes()
}

// skbCtx is a struct __sk_buff for BPF_PROG_TEST_RUN, laid out from the
// object's own BTF rather than mirrored by hand.
type skbCtx struct {
	b    []byte
	offs map[string]uint32
}

func newSkbCtx(t testing.TB) *skbCtx {
	t.Helper()
	spec, err := bpf.LoadCapture()
	if err != nil {
		t.Fatal(err)
	}
	var st *btf.Struct
	if err := spec.Types.TypeByName("__sk_buff", &st); err != nil {
		t.Fatal(err)
	}
	c := &skbCtx{b: make([]byte, st.Size), offs: map[string]uint32{}}
	for _, m := range st.Members {
		c.offs[m.Name] = m.Offset.Bytes()
	}
	return c
}

func (c *skbCtx) set(field string, v uint32) *skbCtx {
	binary.LittleEndian.PutUint32(c.b[c.offs[field]:], v)
	return c
}

func (c *skbCtx) get(field string) uint32 { return binary.LittleEndian.Uint32(c.b[c.offs[field]:]) }

// run runs prog once on frame with ctx, returning the verdict and ctx out.
func run(t testing.TB, prog *ebpf.Program, frame []byte, ctx *skbCtx) (uint32, *skbCtx) {
	t.Helper()
	out := &skbCtx{b: make([]byte, len(ctx.b)), offs: ctx.offs}
	ret, err := prog.Run(&ebpf.RunOptions{Data: frame, Context: ctx.b, ContextOut: out.b})
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	return ret, out
}

func counters(t *testing.T, objs *objects) Counters {
	t.Helper()
	p := &Port{name: "test", objs: objs}
	c, err := p.Counters()
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestCaptureVerdicts(t *testing.T) {
	frame := udpFrame(t, 100, 1)
	cases := []struct {
		path    CapturePath
		mode    Mode
		mark    uint32
		verdict uint32
		want    Counters
		markOut uint32
	}{
		{PathRing, ModePass, 0, tcActOK, Counters{Passed: 1}, 0},
		{PathRing, ModeBlock, 0, tcActShot, Counters{Blocked: 1}, 0},
		{PathRing, ModeBlock, testMagic, tcActShot, Counters{Blocked: 1}, testMagic},
		{PathRing, ModeBuffer, 0, tcActShot, Counters{Captured: 1}, 0},
		{PathRing, ModeBuffer, testMagic, tcActOK, Counters{Injected: 1}, 0},
		{PathRing, ModeBuffer, testMagic + 1, tcActShot, Counters{Captured: 1}, testMagic + 1},
		{PathRing, Mode(0), 0, tcActShot, Counters{Blocked: 1}, 0},
		{PathRedirect, ModePass, 0, tcActOK, Counters{Passed: 1}, 0},
		{PathRedirect, ModeBlock, 0, tcActShot, Counters{Blocked: 1}, 0},
		{PathRedirect, ModeBuffer, 0, tcActRedirect, Counters{Captured: 1}, 0},
		{PathRedirect, ModeBuffer, testMagic, tcActOK, Counters{Injected: 1}, 0},
		{PathRedirect, Mode(7), 0, tcActShot, Counters{Blocked: 1}, 0},
	}
	// Path redirect has no capture variants and runs on every kernel; the
	// ring cases run once per capture variant the kernel has.
	runCases := func(t *testing.T, path CapturePath) {
		for _, tc := range cases {
			if tc.path != path {
				continue
			}
			t.Run(tc.path.String()+"/"+tc.mode.String(), func(t *testing.T) {
				objs := loadForTest(t, tc.path, 1<<16, tc.mode, 5)
				verdict, out := run(t, objs.progs[progCapture], frame, newSkbCtx(t).set("mark", tc.mark))
				if verdict != tc.verdict {
					t.Errorf("verdict %d, want %d", verdict, tc.verdict)
				}
				if got := counters(t, objs); got != tc.want {
					t.Errorf("counters %+v, want %+v", got, tc.want)
				}
				if got := out.get("mark"); got != tc.markOut {
					t.Errorf("mark out %#x, want %#x", got, tc.markOut)
				}
			})
		}
	}
	runCases(t, PathRedirect)
	captureVariants(t, func(t *testing.T) { runCases(t, PathRing) })
}

// readRecords reads n records from ring, failing after a second.
func readRecords(t *testing.T, ring *ebpf.Map, n int) []*Record {
	t.Helper()
	rd, err := ringbuf.NewReader(ring)
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	var recs []*Record
	rd.SetDeadline(time.Now().Add(time.Second))
	for len(recs) < n {
		raw, err := rd.Read()
		if errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("got %d records, want %d", len(recs), n)
		}
		if err != nil {
			t.Fatal(err)
		}
		rec, err := ParseRecord(raw.RawSample)
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, &rec)
	}
	if rd.AvailableBytes() != 0 {
		t.Errorf("%d bytes left in the ring after %d records", rd.AvailableBytes(), n)
	}
	return recs
}

// captureVariants runs f once per ring capture program: the two-copy
// capture everywhere, and capture_copy where the kernel has
// bpf_dynptr_copy. It first checks that loading picks that program.
func captureVariants(t *testing.T, f func(t *testing.T)) {
	for _, v := range []struct {
		name string
		one  bool
		prog string
	}{{"twocopy", false, progCapture}, {"onecopy", true, bpf.CaptureProgCaptureCopy}} {
		t.Run(v.name, func(t *testing.T) {
			requireFor(t, PathRing, AttachAuto)
			if v.one {
				testenv.RequireFeature(t, testenv.FeatureDynptrCopy, testenv.ProbeDynptrCopy())
			}
			old := oneCopy
			oneCopy = func() bool { return v.one }
			t.Cleanup(func() { oneCopy = old })
			objs := loadForTest(t, PathRing, 4096, ModeBuffer, 1)
			info, err := objs.progs[progCapture].Info()
			if err != nil {
				t.Fatal(err)
			}
			if info.Name != v.prog {
				t.Fatalf("loaded capture program %q, want %q", info.Name, v.prog)
			}
			f(t)
		})
	}
}

func TestCaptureRecord(t *testing.T) { captureVariants(t, testCaptureRecord) }

func testCaptureRecord(t *testing.T) {
	objs := loadForTest(t, PathRing, 1<<20, ModeBuffer, 42)
	var frames [][]byte
	// capture_copy copies frames up to ONE_COPY_MIN (2048) twice, larger
	// ones once: these sizes cover both branches.
	for i, size := range []int{60, 1514, 3000} {
		frames = append(frames, udpFrame(t, size, uint32(i)))
		ctx := newSkbCtx(t).set("gso_size", 1448).set("gso_segs", 3).set("mark", 0)
		if v, _ := run(t, objs.progs[progCapture], frames[i], ctx); v != tcActShot {
			t.Fatalf("verdict %d, want SHOT", v)
		}
	}
	recs := readRecords(t, objs.maps[mapCapRing], len(frames))
	for i, r := range recs {
		if r.Hdr.Epoch != 42 || r.Hdr.Len != uint32(len(frames[i])) || r.Hdr.GsoSize != 1448 || r.Hdr.GsoSegs != 3 {
			t.Errorf("record %d header %+v", i, r.Hdr)
		}
		if r.Hdr.TstampNs == 0 || r.Hdr.Ifindex == 0 {
			t.Errorf("record %d: no timestamp or ifindex: %+v", i, r.Hdr)
		}
		if !bytes.Equal(r.Frame, frames[i]) {
			t.Errorf("record %d frame differs", i)
		}
	}
	if c := counters(t, objs); c.Captured != 3 {
		t.Errorf("captured %d, want 3", c.Captured)
	}
}

func TestCaptureRingFull(t *testing.T) { captureVariants(t, testCaptureRingFull) }

func testCaptureRingFull(t *testing.T) {
	// 1000 B frames take the two-copy branch of capture_copy, 3000 B ones
	// its one-copy branch (above ONE_COPY_MIN): both must count ring full.
	for _, size := range []int{1000, 3000} {
		objs := loadForTest(t, PathRing, 8192, ModeBuffer, 1)
		frame := udpFrame(t, size, 0)
		const runs = 10
		for i := 0; i < runs; i++ {
			if v, _ := run(t, objs.progs[progCapture], frame, newSkbCtx(t)); v != tcActShot {
				t.Fatalf("%d B run %d: verdict %d, want SHOT (never pass when full)", size, i, v)
			}
		}
		c := counters(t, objs)
		if c.Captured == 0 || c.RingFull == 0 || c.Captured+c.RingFull != runs {
			t.Errorf("%d B: captured %d + ring full %d, want both > 0 summing to %d", size, c.Captured, c.RingFull, runs)
		}
		for _, r := range readRecords(t, objs.maps[mapCapRing], int(c.Captured)) {
			if !bytes.Equal(r.Frame, frame) {
				t.Errorf("%d B: record frame differs", size)
			}
		}
	}
}

func TestTapIngress(t *testing.T) {
	for _, path := range []CapturePath{PathRing, PathRedirect} {
		t.Run(path.String(), func(t *testing.T) {
			objs := loadForTest(t, path, 1<<16, ModeBuffer, 1)
			v, out := run(t, objs.progs[progTap], udpFrame(t, 80, 0), newSkbCtx(t))
			if v != tcActRedirect || out.get("mark") != testMagic {
				t.Errorf("verdict %d mark %#x, want REDIRECT and %#x", v, out.get("mark"), testMagic)
			}
		})
	}
}

func TestSetConfig(t *testing.T) {
	for _, path := range []CapturePath{PathRing, PathRedirect} {
		t.Run(path.String(), func(t *testing.T) { testSetConfig(t, path) })
	}
}

func testSetConfig(t *testing.T, path CapturePath) {
	objs := loadForTest(t, path, 4096, ModeBuffer, 3)
	p := &Port{name: "test", objs: objs}
	check := func(wantMode Mode, wantEpoch uint64) {
		t.Helper()
		c, err := p.config()
		if err != nil {
			t.Fatal(err)
		}
		if Mode(c.Mode) != wantMode || c.Epoch != wantEpoch || c.Magic != testMagic {
			t.Errorf("%v: config %+v, want mode %v epoch %d", path, c, wantMode, wantEpoch)
		}
	}
	if err := p.SetEpoch(1 << 40); err != nil {
		t.Fatal(err)
	}
	check(ModeBuffer, 1<<40)
	if err := p.SetMode(ModeBlock); err != nil {
		t.Fatal(err)
	}
	check(ModeBlock, 1<<40)
	if err := p.SetMode(Mode(9)); err == nil {
		t.Errorf("%v: invalid mode accepted", path)
	}
	check(ModeBlock, 1<<40)
}

// TestProbe: the probe agrees with what the kernel lets the tests do.
func TestProbe(t *testing.T) {
	testenv.RequirePrivileged(t)
	f := Probe()
	if f.TC != nil {
		t.Fatalf("tc programs: %v", f.TC)
	}
	objs, ringErr := loadObjects(PathRing, 4096, 0, nil)
	if ringErr == nil {
		objs.close()
	}
	if (f.Ring == nil) != (ringErr == nil) || (f.Ring == nil) != (f.Path() == PathRing) {
		t.Errorf("probe says ring %v, loading says %v, path %v", f.Ring, ringErr, f.Path())
	}
	if tcx := testenv.ProbeTCX(); (tcx == nil) != (f.TCX == nil) || (f.TCX == nil) != (f.Attach() == AttachTCX) {
		t.Errorf("kernel tcx probe says %v, Probe says %v, attach %v", tcx, f.TCX, f.Attach())
	}
}

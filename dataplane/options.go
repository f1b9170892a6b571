// SPDX-License-Identifier: Apache-2.0

package dataplane

import (
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"math/bits"
	"os"
	"strings"
)

// DefaultPinRoot is where pinned state lives: <DefaultPinRoot>/<vm>/.
const DefaultPinRoot = "/sys/fs/bpf/resilire"

// Defaults for Options.
//
// Ring sizing rule: the capture ring must absorb what the guest sends
// while netbuf's reader is not draining it, ring >= capture rate x longest
// reader stall, so that the bound that bites is netbuf's held-bytes bound
// (counted, per epoch) and not a full ring (drops that TCP pays for with
// retransmits). Under output commit a TCP sender emits a whole window the
// moment a release acknowledges it, faster than a reader sharing the CPU
// with the release can drain, so the stall to cover is a window burst:
// 64 MiB matches netbuf.DefaultMaxBytes and 64 MB socket buffers (measured
// at 50 ms epochs: 16 MiB rings dropped 250-475 frames per 8 s run and
// carried 3.1-3.3 Gbit/s; 64 MiB dropped none and carried 5.8-5.9).
// Ring pages are kernel memory, allocated once per port.
const (
	DefaultRingBytes = 64 << 20
	DefaultTapQueues = 4
	maxTapQueues     = 256 // kernel MAX_TAP_QUEUES
)

// Options configure Attach.
type Options struct {
	// Name is the VM name; state is pinned under <PinRoot>/<Name>.
	Name string
	// Port is the guest's bridge port (a Xen vifD.N, a tap, a veth).
	Port string
	// Path chooses the capture path; PathAuto probes the kernel.
	Path CapturePath
	// Attach chooses tcx or clsact; AttachAuto prefers tcx.
	Attach AttachMethod
	// RingBytes sizes each ring buffer (rounded up to a power of two);
	// 0 means DefaultRingBytes.
	RingBytes int
	// InputLog also attaches the input-log program (frames to the guest).
	InputLog bool
	// InputLogKind chooses the input-log program; InputLogAuto probes the
	// kernel (kern-ctx where bpf_cast_to_kern_ctx exists, else portable).
	InputLogKind InputLogKind
	// Group attaches the guest-egress program even without the input log:
	// the port is (or will be) a VDEchp group member, whose frames from
	// peers are coloured (see Port.SetRound). Needs BPF ring buffers
	// (Linux 5.8).
	Group bool
	// TapQueues is how many queues netbuf should open on the injection tap;
	// 0 means DefaultTapQueues.
	TapQueues int
	// PinRoot is the bpffs directory holding every VM's state; "" means
	// DefaultPinRoot.
	PinRoot string
	// Logger receives attach/detach events; nil discards.
	Logger *slog.Logger
}

// withDefaults validates o and fills in defaults.
func (o Options) withDefaults() (Options, error) {
	if err := validName(o.Name); err != nil {
		return o, err
	}
	if o.Port == "" {
		return o, fmt.Errorf("no port given: name the guest's bridge port (for example vif3.0)")
	}
	if o.RingBytes == 0 {
		o.RingBytes = DefaultRingBytes
	}
	if o.RingBytes < 0 || o.RingBytes > 1<<30 {
		return o, fmt.Errorf("ring size %d: want 1 byte to 1 GiB", o.RingBytes)
	}
	o.RingBytes = ringSize(o.RingBytes)
	if o.TapQueues == 0 {
		o.TapQueues = DefaultTapQueues
	}
	if o.TapQueues < 1 || o.TapQueues > maxTapQueues {
		return o, fmt.Errorf("tap queues %d: want 1 to %d", o.TapQueues, maxTapQueues)
	}
	if o.PinRoot == "" {
		o.PinRoot = DefaultPinRoot
	}
	o.Logger = orDiscard(o.Logger)
	return o, nil
}

// ringSize rounds n up to a power of two of at least one page, as BPF ring
// buffers require.
func ringSize(n int) int {
	page := os.Getpagesize()
	if n < page {
		n = page
	}
	return 1 << bits.Len(uint(n-1))
}

// validName accepts VM names usable as a single path element.
func validName(name string) error {
	if name == "" || len(name) > 200 || strings.HasPrefix(name, tmpPrefix) {
		return fmt.Errorf("vm name %q: want 1-200 characters, not starting with __tmp-", name)
	}
	// bpffs refuses '.' in names; '/' would leave the pin root.
	if strings.ContainsAny(name, "./\x00\n") {
		return fmt.Errorf("vm name %q: no '.', '/', NUL or newline (bpffs pin names)", name)
	}
	return nil
}

// TapNameFor returns the injection tap's interface name for VM name: a
// hash, because VM names may be longer than IFNAMSIZ or hold any character.
func TapNameFor(name string) string {
	h := fnv.New32a()
	h.Write([]byte(name))
	return fmt.Sprintf("rtap%08x", h.Sum32())
}

func orDiscard(l *slog.Logger) *slog.Logger {
	if l == nil {
		return slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return l
}

// SPDX-License-Identifier: Apache-2.0

package dataplane

import (
	"github.com/cilium/ebpf"

	"github.com/resilire/resilire/bpf"
)

// Typed views of the bpf2go objects. spec.LoadAndAssign loads exactly the
// programs a view names (and the maps they use), so a view's struct tags
// pick the variant this kernel runs: capture or capture_copy, input_log or
// input_log_portable. named lists them under the one name each is
// attached and pinned by, which is what objects, pinning and Open use.
type view interface {
	named() (map[string]*ebpf.Program, map[string]*ebpf.Map)
}

// ringView is path ring with the two-copy capture.
type ringView struct {
	bpf.CaptureMaps
	Capture    *ebpf.Program `ebpf:"capture"`
	TapIngress *ebpf.Program `ebpf:"tap_ingress"`
	SetConfig  *ebpf.Program `ebpf:"set_config"`
}

func (v *ringView) named() (map[string]*ebpf.Program, map[string]*ebpf.Map) {
	return captureProgs(v.Capture, v.TapIngress, v.SetConfig), captureMaps(&v.CaptureMaps)
}

// ringCopyView is path ring with the one-copy capture (bpf_dynptr_copy).
type ringCopyView struct {
	bpf.CaptureMaps
	Capture    *ebpf.Program `ebpf:"capture_copy"`
	TapIngress *ebpf.Program `ebpf:"tap_ingress"`
	SetConfig  *ebpf.Program `ebpf:"set_config"`
}

func (v *ringCopyView) named() (map[string]*ebpf.Program, map[string]*ebpf.Map) {
	return captureProgs(v.Capture, v.TapIngress, v.SetConfig), captureMaps(&v.CaptureMaps)
}

// redirectView is path redirect: the whole generated object.
type redirectView struct{ bpf.RedirectObjects }

func (v *redirectView) named() (map[string]*ebpf.Program, map[string]*ebpf.Map) {
	return captureProgs(v.Capture, v.TapIngress, v.SetConfig),
		map[string]*ebpf.Map{mapConfig: v.Config, mapCounters: v.Counters, mapPeers: v.GroupPeers}
}

// inputLogView is the kern-ctx guest-egress program (input log, group
// receiver).
type inputLogView struct {
	bpf.InputlogMaps
	InputLog *ebpf.Program `ebpf:"input_log"`
}

func (v *inputLogView) named() (map[string]*ebpf.Program, map[string]*ebpf.Map) {
	return map[string]*ebpf.Program{progInputLog: v.InputLog}, inputLogMaps(&v.InputlogMaps)
}

// inputLogPortableView is the portable guest-egress program, named input_log.
type inputLogPortableView struct {
	bpf.InputlogMaps
	InputLog *ebpf.Program `ebpf:"input_log_portable"`
}

func (v *inputLogPortableView) named() (map[string]*ebpf.Program, map[string]*ebpf.Map) {
	return map[string]*ebpf.Program{progInputLog: v.InputLog}, inputLogMaps(&v.InputlogMaps)
}

func captureProgs(capture, tap, setConfig *ebpf.Program) map[string]*ebpf.Program {
	return map[string]*ebpf.Program{progCapture: capture, progTap: tap, progSetConfig: setConfig}
}

func captureMaps(m *bpf.CaptureMaps) map[string]*ebpf.Map {
	return map[string]*ebpf.Map{mapConfig: m.Config, mapCounters: m.Counters, mapCapRing: m.CaptureRing, mapScratch: m.Scratch,
		mapPeers: m.GroupPeers}
}

func inputLogMaps(m *bpf.InputlogMaps) map[string]*ebpf.Map {
	return map[string]*ebpf.Map{mapConfig: m.Config, mapCounters: m.Counters, mapInputRing: m.InputRing, mapScratch: m.Scratch,
		mapPeers: m.GroupPeers, mapHoldRing: m.HoldRing}
}

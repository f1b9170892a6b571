// SPDX-License-Identifier: Apache-2.0

package kernelvm

import "fmt"

// The guest /init reads the manifest at ManifestPath and writes the report
// lines below on the report port; Run parses them.
const (
	ManifestPath = "/kernelvm/manifest.json"
	ModulesDir   = "/lib/modules"
	// ReportDevice is the second serial port: the first is the kernel
	// console, kept apart so kernel messages never split a test's line.
	ReportDevice = "/dev/ttyS1"

	beginMarker = "=== KERNELVM BEGIN " // + job name
	endMarker   = "=== KERNELVM END "   // + job name, " exit=N dur=D"
	doneMarker  = "=== KERNELVM DONE"
	failMarker  = "=== KERNELVM INIT FAILED: " // + error
)

// Manifest tells the guest what to load and run.
type Manifest struct {
	Modules []string // module files under ModulesDir, in load order
	Jobs    []Job
}

// Job is one test binary run in the guest.
type Job struct {
	Name   string   // package path relative to the module root, e.g. netbuf
	Binary string   // path in the guest
	Dir    string   // working directory in the guest (holds the testdata)
	Args   []string // arguments after the binary, -test.v included
	Env    []string // added to the guest's base environment
	// TimeoutSec bounds the binary's run; the guest kills it after that.
	TimeoutSec int
}

// BeginLine announces a job.
func BeginLine(name string) string { return beginMarker + name }

// EndLine reports how a job's binary ended.
func EndLine(name string, exit int, dur string) string {
	return fmt.Sprintf("%s%s exit=%d dur=%s", endMarker, name, exit, dur)
}

// DoneLine says every job ran.
func DoneLine() string { return doneMarker }

// FailLine reports that the guest's setup failed.
func FailLine(err error) string { return failMarker + err.Error() }

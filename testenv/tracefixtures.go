// SPDX-License-Identifier: Apache-2.0

package testenv

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
)

// TraceFixtures names the small dirty-memory traces committed in
// checkpointer/trace/testdata/ (see that package's doc.go).
var TraceFixtures = []string{"redis", "pgbench", "ep"}

// TraceFixtureDir returns the directory of the committed fixture name, for tests
// and benchmarks of other packages. It locates the source tree through the
// path this file was compiled from, so it fails in binaries built with
// -trimpath.
func TraceFixtureDir(name string) (string, error) {
	_, file, _, ok := runtime.Caller(0)
	if !ok || !filepath.IsAbs(file) {
		return "", fmt.Errorf("fixture %s: source tree not known (built with -trimpath?)", name)
	}
	dir := filepath.Join(filepath.Dir(file), "..", "checkpointer", "trace", "testdata", name)
	if _, err := os.Stat(filepath.Join(dir, "trace.rtr")); err != nil {
		return "", fmt.Errorf("fixture %s: %w", name, err)
	}
	return dir, nil
}

// SPDX-License-Identifier: Apache-2.0

package trace

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
)

// Fixtures names the small traces committed in testdata/ (see doc.go).
var Fixtures = []string{"redis", "pgbench", "ep"}

// FixtureDir returns the directory of the committed fixture name, for tests
// and benchmarks of other packages. It locates the source tree through the
// path this file was compiled from, so it fails in binaries built with
// -trimpath.
func FixtureDir(name string) (string, error) {
	_, file, _, ok := runtime.Caller(0)
	if !ok || !filepath.IsAbs(file) {
		return "", fmt.Errorf("fixture %s: source tree not known (built with -trimpath?)", name)
	}
	dir := filepath.Join(filepath.Dir(file), "testdata", name)
	if _, err := os.Stat(filepath.Join(dir, FileName)); err != nil {
		return "", fmt.Errorf("fixture %s: %w", name, err)
	}
	return dir, nil
}

// SPDX-License-Identifier: Apache-2.0

package netbuf

import (
	"os"
	"testing"

	"github.com/resilire/resilire/testenv"
)

// TestMain fails the run if the tests leak file descriptors: a holder is
// long-lived, and a leaked tap queue or ring reader would pin resources.
func TestMain(m *testing.M) { os.Exit(testenv.RunCheckingFDs(m)) }

// SPDX-License-Identifier: Apache-2.0

package dataplane

import (
	"os"
	"testing"

	"github.com/resilire/resilire/testenv"
)

func TestMain(m *testing.M) { os.Exit(testenv.RunCheckingFDs(m)) }

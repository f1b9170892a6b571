// SPDX-License-Identifier: Apache-2.0

//go:build linux && !amd64

package qemu

import (
	"errors"
	"fmt"
	"log/slog"
)

// errNoExact: the injection (register layout) is written for amd64 only.
var errNoExact = fmt.Errorf("exact dirty tracking is implemented for amd64 only: %w", errors.ErrUnsupported)

func probeKernel() error    { return errNoExact }
func probeInjection() error { return errNoExact }

func newUffdTracker(int, string, uint64, *slog.Logger) (exactTracker, error) { return nil, errNoExact }

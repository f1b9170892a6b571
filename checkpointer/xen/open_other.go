// SPDX-License-Identifier: Apache-2.0

//go:build !xen

package xen

import (
	"context"
	"fmt"
)

// Built reports whether this binary carries the libxc implementation.
const Built = false

// OpenDomain fails in builds without the xen tag: the libxc implementation
// is not compiled in. Rebuild with `go build -tags xen` (needs libxen-dev).
func OpenDomain(ctx context.Context, vm string, opts Options) (*Domain, error) {
	return nil, fmt.Errorf("open xen domain %s: %w", vm, ErrNotBuilt)
}

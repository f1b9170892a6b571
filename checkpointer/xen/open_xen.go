// SPDX-License-Identifier: Apache-2.0

//go:build xen

package xen

import "context"

// Built reports whether this binary carries the libxc implementation.
const Built = true

// OpenDomain opens the guest vm (a domain name or numeric id) through the
// real libxc. Closing the Domain also closes the libxc handles.
func OpenDomain(ctx context.Context, vm string, opts Options) (*Domain, error) {
	domid, err := ResolveDomID(ctx, vm)
	if err != nil {
		return nil, err
	}
	xc, err := Open()
	if err != nil {
		return nil, err
	}
	d, err := NewDomain(xc, domid, vm, opts)
	if err != nil {
		xc.Close()
		return nil, err
	}
	d.owned = xc
	return d, nil
}

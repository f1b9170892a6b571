// SPDX-License-Identifier: Apache-2.0

package testenv

import (
	"context"
	"fmt"
	"net"

	"github.com/vishvananda/netns"
)

// InNetns runs fn on an OS thread switched into the named namespace
// (/run/netns/<ns>). Sockets fn creates stay in that namespace after it
// returns, so a test can dial from the client namespace in-process.
func InNetns(ns string, fn func() error) error {
	h, err := netns.GetFromName(ns)
	if err != nil {
		return fmt.Errorf("open netns %s: %w", ns, err)
	}
	defer h.Close()
	return doIn(h, ns, fn)
}

// DialIn connects to addr from inside namespace ns.
func DialIn(ctx context.Context, ns, network, addr string) (net.Conn, error) {
	var c net.Conn
	err := InNetns(ns, func() error {
		var d net.Dialer
		var err error
		c, err = d.DialContext(ctx, network, addr)
		return err
	})
	return c, err
}

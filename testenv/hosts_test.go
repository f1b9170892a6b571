// SPDX-License-Identifier: Apache-2.0

package testenv

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"testing"
	"time"
)

func TestRigConfigValidation(t *testing.T) {
	for _, p := range []string{"", "toolongprefix", "a b"} {
		if _, err := NewRig(RigConfig{Prefix: p}); err == nil {
			t.Errorf("NewRig(prefix %q) accepted", p)
		}
	}
}

// reach reports whether a TCP connection from namespace from reaches a
// listener on addr in namespace to, within one second.
func reach(ctx context.Context, from, to, addr string) error {
	var l net.Listener
	if err := InNetns(to, func() (err error) {
		l, err = net.Listen("tcp", net.JoinHostPort(addr, "0"))
		return err
	}); err != nil {
		return err
	}
	defer l.Close()
	go func() {
		if c, err := l.Accept(); err == nil {
			_, _ = c.Write([]byte("hi")) // the dialer checks what arrived
			c.Close()
		}
	}()
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	c, err := DialIn(ctx, from, "tcp", l.Addr().String())
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.SetDeadline(time.Now().Add(time.Second)); err != nil {
		return err
	}
	b, err := io.ReadAll(c)
	if err != nil || string(b) != "hi" {
		return fmt.Errorf("read %q: %v", b, err)
	}
	return nil
}

// TestRig builds the rig and checks every path: client to both hosts over
// the LAN, host-a to host-b over the replication link, a partition of the
// replication link, a dead host-a, and the teardown.
func TestRig(t *testing.T) {
	RequirePrivileged(t)
	r, err := NewRig(RigConfig{Prefix: RigPrefix("rqmt")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, c := range []struct {
		from string
		h    Host
		addr string
	}{
		{r.Client, r.A, r.A.Addr.String()},
		{r.Client, r.B, r.B.Addr.String()},
		{r.A.Netns, r.B, r.B.RepAddr.String()},
		{r.B.Netns, r.A, r.A.RepAddr.String()},
	} {
		if err := reach(ctx, c.from, c.h.Netns, c.addr); err != nil {
			t.Errorf("%s -> %s: %v", c.from, c.addr, err)
		}
	}
	if err := r.SetReplicationLink(false); err != nil {
		t.Fatal(err)
	}
	if err := reach(ctx, r.A.Netns, r.B.Netns, r.B.RepAddr.String()); err == nil {
		t.Error("replication link still passes traffic after the partition")
	}
	if err := reach(ctx, r.Client, r.A.Netns, r.A.Addr.String()); err != nil {
		t.Errorf("LAN broken by the replication partition: %v", err)
	}
	if err := r.SetHostLinks(r.A, false); err != nil {
		t.Fatal(err)
	}
	if err := reach(ctx, r.Client, r.A.Netns, r.A.Addr.String()); err == nil {
		t.Error("host-a still reachable with its links down")
	}
	if err := reach(ctx, r.Client, r.B.Netns, r.B.Addr.String()); err != nil {
		t.Errorf("host-b unreachable after host-a went down: %v", err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat("/run/netns/" + r.A.Netns); !os.IsNotExist(err) {
		t.Errorf("namespace %s left behind: %v", r.A.Netns, err)
	}
}

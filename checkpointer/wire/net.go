// SPDX-License-Identifier: Apache-2.0

package wire

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"time"
)

// Listen opens the backup's replication listener, with mutual TLS when
// tlsFiles is enabled. Without TLS it warns loudly: anyone who can reach
// the port can then overwrite the replica.
func Listen(addr string, tlsFiles TLSFiles, log *slog.Logger) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", addr, err)
	}
	if !tlsFiles.Enabled() {
		WarnPlaintext(log, addr)
		return ln, nil
	}
	cfg, err := tlsFiles.ServerConfig()
	if err != nil {
		_ = ln.Close()
		return nil, err
	}
	return tls.NewListener(ln, cfg), nil
}

// Dialer returns the primary's dialer: TCP to addr, wrapped in mutual TLS
// when tlsFiles is enabled.
func Dialer(addr string, tlsFiles TLSFiles, timeout time.Duration) (func(context.Context) (net.Conn, error), error) {
	d := &net.Dialer{Timeout: timeout, KeepAlive: 15 * time.Second}
	if !tlsFiles.Enabled() {
		return func(ctx context.Context) (net.Conn, error) { return d.DialContext(ctx, "tcp", addr) }, nil
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("backup address %q: %w", addr, err)
	}
	cfg, err := tlsFiles.ClientConfig(host)
	if err != nil {
		return nil, err
	}
	return func(ctx context.Context) (net.Conn, error) {
		td := &tls.Dialer{NetDialer: d, Config: cfg}
		return td.DialContext(ctx, "tcp", addr)
	}, nil
}

// WarnPlaintext logs the loud warning for a replication link without TLS.
func WarnPlaintext(log *slog.Logger, addr string) {
	if log == nil {
		return
	}
	log.Warn("!!! REPLICATION LINK WITHOUT TLS: checkpoints travel unauthenticated and in clear; "+
		"anyone on the path can read guest memory or inject a checkpoint. Configure --tls-cert, --tls-key and --tls-ca.",
		"addr", addr)
}

// SPDX-License-Identifier: Apache-2.0

package checkpointer

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
)

// ListenTCP opens the backup's replication listener, with mutual TLS when
// tlsFiles is enabled. Without TLS it warns loudly: anyone who can reach
// the port can then overwrite the replica.
func ListenTCP(addr string, tlsFiles TLSFiles, log *slog.Logger) (net.Listener, error) {
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
		ln.Close()
		return nil, err
	}
	return tls.NewListener(ln, cfg), nil
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

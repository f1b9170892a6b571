// SPDX-License-Identifier: Apache-2.0

package checkpointer_test

import (
	"crypto/sha256"
	"crypto/tls"
	"strings"
	"testing"
	"time"

	"github.com/resilire/resilire/checkpointer/wire"
	"github.com/resilire/resilire/testenv/pki"
)

// Mutual TLS: the right client certificate gets a session; a certificate
// from another CA, or none, is refused during the handshake, logged, and
// nothing is applied.
func TestMutualTLS(t *testing.T) {
	ca := pki.NewCA(t, "resilire-test-ca")
	server, client := ca.Issue(t, "backup", 2), ca.Issue(t, "primary", 3)
	rogue := pki.NewCA(t, "rogue-ca").Issue(t, "primary", 4)
	rogue.CA = client.CA // trusts the real backup, but its own cert is foreign

	ln, err := wire.Listen("127.0.0.1:0", server, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, addr, _, log := newTestBackup(t, nil, ln)

	for _, bad := range []struct {
		name  string
		files *wire.TLSFiles
	}{{"foreign-cert", &rogue}, {"no-cert", nil}} {
		var cfgFiles wire.TLSFiles
		if bad.files != nil {
			cfgFiles = *bad.files
		} else {
			cfgFiles = client
		}
		cfg, err := cfgFiles.ClientConfig("127.0.0.1")
		if err != nil {
			t.Fatal(err)
		}
		if bad.files == nil {
			cfg.Certificates = nil
		} else {
			// Present the foreign certificate even though the backup's CA
			// list does not name its issuer.
			foreign := cfg.Certificates[0]
			cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &foreign, nil }
		}
		tp := dialTestPrimary(t, addr, cfg)
		if typ, p := tp.hello("vm1"); typ == wire.HelloAck {
			t.Fatalf("%s: session accepted", bad.name)
		} else {
			t.Logf("%s: %q", bad.name, p)
		}
	}
	waitFor(t, 2*time.Second, "refusal log", func() bool { return strings.Count(log.String(), "refused primary") >= 2 })
	mustContain(t, log.String(), "unknown authority")
	mustContain(t, log.String(), "didn't provide a certificate")
	if got, _ := b.Committed(); got != 0 || b.ReplicaHash() != sha256.Sum256(make([]byte, testMem)) {
		t.Fatal("a refused client changed the replica")
	}

	// The right certificate works end to end.
	cfg, err := client.ClientConfig("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	commitFirst(t, dialTestPrimary(t, addr, cfg))
	if got, _ := b.Committed(); got != 1 {
		t.Fatalf("committed %d after a good TLS session", got)
	}
}

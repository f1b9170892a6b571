// SPDX-License-Identifier: Apache-2.0

package checkpointer_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/resilire/resilire/checkpointer/wire"
)

// testCA is a throwaway certificate authority for the TLS tests.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	dir  string
	name string
}

func newTestCA(t *testing.T, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	ca := &testCA{cert: cert, key: key, dir: t.TempDir(), name: name}
	writePEM(t, filepath.Join(ca.dir, "ca.pem"), "CERTIFICATE", der)
	return ca
}

// issue writes a leaf certificate and key for 127.0.0.1 and returns the files.
func (ca *testCA) issue(t *testing.T, cn string, serial int64) wire.TLSFiles {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	f := wire.TLSFiles{Cert: filepath.Join(ca.dir, cn+".pem"), Key: filepath.Join(ca.dir, cn+".key"), CA: filepath.Join(ca.dir, "ca.pem")}
	writePEM(t, f.Cert, "CERTIFICATE", der)
	writePEM(t, f.Key, "EC PRIVATE KEY", kder)
	return f
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// Mutual TLS: the right client certificate gets a session; a certificate
// from another CA, or none, is refused during the handshake, logged, and
// nothing is applied.
func TestMutualTLS(t *testing.T) {
	ca := newTestCA(t, "resilire-test-ca")
	server, client := ca.issue(t, "backup", 2), ca.issue(t, "primary", 3)
	rogue := newTestCA(t, "rogue-ca").issue(t, "primary", 4)
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

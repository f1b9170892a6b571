// SPDX-License-Identifier: Apache-2.0

package xen

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestResolveDomID(t *testing.T) {
	ctx := context.Background()
	if id, err := ResolveDomID(ctx, "12"); err != nil || id != 12 {
		t.Fatalf("numeric: %d, %v", id, err)
	}
	// A stand-in for xl: knows one domain.
	fake := filepath.Join(t.TempDir(), "xl")
	script := "#!/bin/sh\n[ \"$1\" = domid ] && [ \"$2\" = guest ] && { echo 5; exit 0; }\necho \"Can't get domid of domain name '$2'\" >&2; exit 1\n"
	if err := os.WriteFile(fake, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	old := XLCommand
	XLCommand = fake
	t.Cleanup(func() { XLCommand = old })
	if id, err := ResolveDomID(ctx, "guest"); err != nil || id != 5 {
		t.Fatalf("by name: %d, %v", id, err)
	}
	if _, err := ResolveDomID(ctx, "other"); !errors.Is(err, ErrNoDomain) {
		t.Fatalf("unknown name: %v", err)
	}
}

// Create refuses a name that is taken (its disk would not be the one the
// caller serves) and carries xl's output when xl create fails.
func TestCreate(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	log := filepath.Join(dir, "calls")
	fake := filepath.Join(dir, "xl")
	script := "#!/bin/sh\necho \"$@\" >> " + log + "\n" +
		"case \"$1 $2 $3\" in\n'domid guest ') echo 5; exit 0 ;;\n'create -p /bad.cfg') echo 'Parsing config from /bad.cfg' >&2; exit 3 ;;\n" +
		"domid*) exit 1 ;;\nesac\nexit 0\n"
	if err := os.WriteFile(fake, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	old := XLCommand
	XLCommand = fake
	t.Cleanup(func() { XLCommand = old })
	if err := Create(ctx, "guest", "/g.cfg"); err == nil || !strings.Contains(err.Error(), `domain "guest" exists already`) {
		t.Fatalf("existing domain: %v", err)
	}
	if err := Create(ctx, "new", "/bad.cfg"); err == nil || !strings.Contains(err.Error(), "create -p /bad.cfg") ||
		!strings.Contains(err.Error(), "Parsing config from /bad.cfg") {
		t.Fatalf("failing xl create: %v", err)
	}
	if err := Create(ctx, "new", "/new.cfg"); err != nil {
		t.Fatal(err)
	}
	if err := Unpause(ctx, "new"); err != nil {
		t.Fatal(err)
	}
	if err := Destroy(ctx, "new"); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(log)
	if err != nil {
		t.Fatal(err)
	}
	if want := "domid guest\ndomid new\ncreate -p /bad.cfg\ndomid new\ncreate -p /new.cfg\nunpause new\ndestroy new\n"; string(b) != want {
		t.Fatalf("xl calls %q, want %q", b, want)
	}
}

func TestOpenDomainWithoutTag(t *testing.T) {
	if Built {
		t.Skip("built with -tags xen")
	}
	if _, err := OpenDomain(context.Background(), "1", Options{}); !errors.Is(err, ErrNotBuilt) {
		t.Fatalf("err %v, want ErrNotBuilt", err)
	}
}

// SPDX-License-Identifier: Apache-2.0

package xen

import (
	"context"
	"errors"
	"os"
	"path/filepath"
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

func TestOpenDomainWithoutTag(t *testing.T) {
	if Built {
		t.Skip("built with -tags xen")
	}
	if _, err := OpenDomain(context.Background(), "1", Options{}); !errors.Is(err, ErrNotBuilt) {
		t.Fatalf("err %v, want ErrNotBuilt", err)
	}
}

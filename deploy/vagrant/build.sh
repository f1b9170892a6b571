#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# Builds resilire with the Xen driver (-tags xen) inside the dom0 from the
# synced tree, installs the binary and the systemd unit.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -q --no-install-recommends build-essential git libxen-dev \
  clang-14 llvm-14 libbpf-dev bpftool iproute2
gover=$(awk '$1 == "go" {print $2; exit}' /vagrant/go.mod)
if ! /usr/local/go/bin/go version 2>/dev/null | grep -q "go$gover "; then
  rm -rf /usr/local/go
  curl -fsSL "https://go.dev/dl/go$gover.linux-amd64.tar.gz" | tar -C /usr/local -xz
fi
export PATH=/usr/local/go/bin:$PATH GOFLAGS=-tags=xen
# Build in a copy: /vagrant is an rsync share, re-synced by `vagrant rsync`.
rsync -a --delete --exclude .git --exclude bin /vagrant/ /opt/resilire-src/
cd /opt/resilire-src
make build
install -m 0755 bin/resilire /usr/local/bin/resilire
install -m 0644 deploy/resilire@.service /etc/systemd/system/resilire@.service
install -d -m 0755 /usr/share/doc/resilire
install -m 0644 docs/xen.md /usr/share/doc/resilire/xen.md
systemctl daemon-reload
/usr/local/bin/resilire version

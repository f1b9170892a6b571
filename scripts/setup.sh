#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Installs the Debian packages and Go modules Resilire needs on a fresh Debian 12 host.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
pkgs=(xen-utils-4.17 vagrant clang-14 clang-format-14 llvm-14 libbpf-dev bpftool iproute2 iperf3 tcpdump ethtool qemu-system-x86 libxen-dev e2fsprogs qemu-utils debootstrap)
# Linters are pinned to exact versions: a new release must not fail CI.
pinned=(shellcheck=0.9.0-1)
missing=()
for p in "${pkgs[@]}"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p"); done
for pv in "${pinned[@]}"; do
  [ "$(dpkg-query -W -f='${Status} ${Version}' "${pv%%=*}" 2>/dev/null)" = "install ok installed ${pv#*=}" ] || missing+=("$pv")
done
# apt lists are needed for the installs and for `apt-get download` of the guest kernel.
if [ ${#missing[@]} -gt 0 ] || ! ls /var/lib/apt/lists/*_Packages >/dev/null 2>&1; then
  apt-get update -q
fi
if [ ${#missing[@]} -gt 0 ]; then
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
export PATH=/usr/local/go/bin:$PATH
go mod download
# golangci-lint v2 as its own module (its dependencies stay out of go.mod);
# `make lint-go` runs it from GOPATH/bin and checks this version.
golangci_lint=v2.15.0
gobin="$(go env GOPATH)/bin"
if [[ "$("$gobin/golangci-lint" version 2>/dev/null || true)" != *"version ${golangci_lint#v} "* ]]; then
  GOBIN="$gobin" go install "github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$golangci_lint"
fi

# SPDX-License-Identifier: Apache-2.0
# Resilire build. `make help` lists the targets.

GO       ?= go
CLANG    ?= clang-14
STRIP    ?= llvm-strip-14
VERSION  ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -X github.com/resilire/resilire/cli.Version=$(VERSION)
BIN      := bin/resilire
export CLANG STRIP

.DEFAULT_GOAL := build

.PHONY: help build all generate check-generated test test-priv bench lint lint-go lint-sh clean

help: ## list the targets
	@grep -hE '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | sort | awk -F ':.*## ' '{printf "  %-20s %s\n", $$1, $$2}'

build: ## build bin/resilire
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) .

all: build ## build everything

generate: ## regenerate the bpf2go objects (needs clang-14)
	cd bpf && $(GO) generate ./...

check-generated: generate ## regenerate BPF objects and fail if they differ from the committed ones
	git diff --exit-code -- bpf/ || { echo "generated BPF objects are stale: run make generate and commit"; exit 1; }
	@test -z "$$(git status --porcelain -- bpf/)" || { git status --porcelain -- bpf/; echo "untracked generated files"; exit 1; }

test: ## unit tests: -short -race, unprivileged
	$(GO) test -short -race -count=1 ./...

test-priv: ## all tests, privileged tier included (root; RESILIRE_TEST_PRIVILEGED=1), but the nested Xen rig (make xen-test)
	RESILIRE_TEST_PRIVILEGED=1 $(GO) test -count=1 -timeout 30m $$($(GO) list ./... | grep -v /testenv/xenrig)

bench: ## every Go benchmark, once each (CI smoke)
	$(GO) test -run '^$$' -bench . -benchtime=1x ./...

# golangci-lint (.golangci.yml: gofmt, govet, errcheck, staticcheck, unused,
# misspell, ineffassign), installed at this version by scripts/setup.sh.
GOLANGCI_LINT ?= $(shell $(GO) env GOPATH)/bin/golangci-lint
GOLANGCI_LINT_VERSION := 2.15.0
# Every shell script in the repository.
SHELL_SCRIPTS = $(shell git ls-files '*.sh' .ci/run deploy/xen/block-resilire)
# `make lint` runs these; an area's mk/*.mk may append its own (lint-bpf).
LINT_TARGETS := lint-go lint-sh

lint-go: ## golangci-lint on all Go code, also with -tags xen
	@$(GOLANGCI_LINT) version 2>/dev/null | grep -q "version $(GOLANGCI_LINT_VERSION) " || \
	  { echo "need golangci-lint $(GOLANGCI_LINT_VERSION) at $(GOLANGCI_LINT): run scripts/setup.sh"; exit 1; }
	$(GOLANGCI_LINT) run ./...
	$(GOLANGCI_LINT) run --build-tags xen ./...

lint-sh: ## shellcheck every shell script
	shellcheck $(SHELL_SCRIPTS)

clean: ## remove build outputs
	rm -rf bin/

# Feature targets (bench-*, demo, assets, ...) live in mk/*.mk, one file per area.
-include mk/*.mk

# After the includes, so that LINT_TARGETS holds what they appended.
lint: $(LINT_TARGETS) ## every linter: lint-go, lint-sh and any LINT_TARGETS an mk/*.mk adds

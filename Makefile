# Locksmith — the two commands a new machine needs:
#   make dev    run Locksmith locally with a demo tenant
#   make test   run every check CI runs
SHELL := /usr/bin/env bash
.SHELLFLAGS := -euo pipefail -c
GO ?= go

.PHONY: conformance dev test generate check-generated vet fmt-check build fuzz bench dev-check help

help:
	@echo "make dev    run Locksmith locally (PostgreSQL found or started, demo IdP, Acme Tasks, demo tenant)"
	@echo "make test   generate-check, gofmt, go vet, go test -race ./... against a real PostgreSQL"
	@echo "make fuzz   run each fuzz target briefly"
	@echo "make conformance  run the MCP conformance suite through Locksmith (CI runs it)"
	@echo "make bench  run the benchmarks under bench/"

dev:
	@echo "==> finding or starting PostgreSQL"
	@export DATABASE_URL="$$(scripts/ensure-postgres.sh)"; \
	echo "==> building locksmith"; \
	$(GO) build -o bin/locksmith ./cmd/locksmith; \
	exec ./bin/locksmith dev

build:
	$(GO) build -o bin/locksmith ./cmd/locksmith

generate:
	$(GO) tool templ generate

# Generated templ code is committed; CI regenerates it and fails on a diff.
check-generated: generate
	@if [[ -n "$$(git status --porcelain -- '*_templ.go')" ]]; then \
		echo "error: *_templ.go files are stale; run 'make generate' and commit them:"; \
		git status --porcelain -- '*_templ.go'; exit 1; fi

fmt-check:
	@out="$$(gofmt -l $$(git ls-files '*.go'))"; if [[ -n "$$out" ]]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...

test: check-generated fmt-check vet
	@echo "==> finding or starting PostgreSQL"
	@export DATABASE_URL="$$(scripts/ensure-postgres.sh)"; \
	echo "==> finding or installing Chromium for the browser tests"; \
	export LOCKSMITH_CHROMIUM="$$(scripts/ensure-chromium.sh)"; \
	echo "==> go test -race ./..."; \
	$(GO) test -race -count=1 -timeout 30m ./...
	@$(MAKE) --no-print-directory fuzz FUZZTIME=10s

FUZZTIME ?= 30s
fuzz:
	@for pkg in $$($(GO) list ./...); do \
		dir=$$($(GO) list -f '{{.Dir}}' $$pkg); \
		for fz in $$(grep -ho '^func Fuzz[A-Za-z0-9_]*' $$dir/*_test.go 2>/dev/null | sed 's/func //'); do \
			echo "==> fuzz $$pkg $$fz ($(FUZZTIME))"; \
			$(GO) test -run='^$$' -fuzz="^$$fz$$" -fuzztime=$(FUZZTIME) $$pkg; \
		done; \
	done

# The official MCP conformance suite through Locksmith, fronting the Go SDK's
# everything-server as an upstream MCP server (see docs/mcp.md). Needs npm.
conformance:
	bash scripts/conformance.sh

bench:
	@export DATABASE_URL="$$(scripts/ensure-postgres.sh)"; \
	$(GO) test -run='^$$' -bench=. -benchmem ./bench/...

dev-check:
	bench/dev-start.sh

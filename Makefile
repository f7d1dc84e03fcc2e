# weir — build, test, demo, bench. Every target installs what is missing first.
SHELL := /bin/bash
ARCH := $(shell uname -m | sed 's/x86_64/x86/;s/aarch64/arm64/')
MULTIARCH := $(shell gcc -print-multiarch 2>/dev/null || echo x86_64-linux-gnu)
BPF_CFLAGS := -O2 -g -target bpf -D__TARGET_ARCH_$(ARCH) -Wall -Wextra -Werror \
	-Wno-unused-parameter -I bpf/include -I bpf -I /usr/include/$(MULTIARCH)
BPF_SRC := $(wildcard bpf/*.c bpf/tests/*.c)
BPF_OBJ := $(patsubst bpf/%.c,dist/bpf/%.o,$(BPF_SRC))
BPF_HDR := $(wildcard bpf/include/*.h bpf/lib/*.h)
TS_SRC := $(shell find src test bench -name '*.ts' 2>/dev/null)
PREFIX ?= /usr/local

.PHONY: all deps build bpf ts test lint docs demo demo-cluster bench install clean
all: build

deps:
	@./scripts/install-deps.sh

build: deps bpf ts

bpf: $(BPF_OBJ)

dist/bpf/%.o: bpf/%.c $(BPF_HDR)
	@mkdir -p $(dir $@)
	clang $(BPF_CFLAGS) -c $< -o $@

ts: dist/.tsbuild

dist/.tsbuild: $(TS_SRC) tsconfig.json package-lock.json
	npx tsc -p tsconfig.json
	@touch $@

lint: deps
	npx eslint --max-warnings=0 .
	npx prettier --check --log-level=warn .

# All tests: unit, datapath (BPF_PROG_TEST_RUN) and lab integration. Needs root (CI runs as root).
# One file: make test TESTS=dist/src/bpf/map.privileged.test.js
TESTS ?= $(shell find dist -name '*.test.js' -not -path '*/node_modules/*' | sort)
# The lab suites that take the agent's --host-routing from WEIR_TEST_HOST_ROUTING run a second time
# with --host-routing legacy (the node's stack routes pod traffic): both modes are tested. They call
# hostRoutingAgent (test/support/host-routing.ts) themselves or through GatewayLab (echo-pods.ts).
LEGACY_TESTS ?= $(shell grep -lE 'hostRoutingAgent|GatewayLab' $(filter dist/test/integration/%,$(TESTS)) /dev/null 2>/dev/null)
test: build lint
	@./scripts/run-tests.sh $(TESTS)
	@[ -z "$(strip $(LEGACY_TESTS))" ] || WEIR_TEST_HOST_ROUTING=legacy ./scripts/run-tests.sh $(LEGACY_TESTS)

# Generated documentation, from the catalogues: docs/errors.md (src/shared/error-codes.ts), and the
# generated sections of docs/datapath.md (maps, drop reasons) and docs/agent.md (settings). The tests
# fail while any of them is stale.
docs: build
	node dist/src/shared/error-docs.js
	WEIR_WRITE_DOCS=1 node --test dist/src/datapath/maps/catalog.test.js dist/src/datapath/drop-reasons.test.js dist/src/agent/settings.test.js >/dev/null

demo: build
	./scripts/demo.sh

# The same shop on three nodes: etcd, one agent per node, VXLAN carrying identities between them.
demo-cluster: build
	./scripts/demo-cluster.sh

bench: build
	node dist/bench/run.js

install: build
	ln -sf $(CURDIR)/bin/weir $(PREFIX)/bin/weir
	@echo "weir installed as $(PREFIX)/bin/weir"

clean:
	rm -rf dist

# Confab: the two commands of the README, and the steps they are made of.
#
#   make run    install what running needs, build the optimized app, serve it on
#               http://127.0.0.1:3000 (memory engine)
#   make test   install what testing needs, build, run every Rust test and the Playwright suite
#   make dev    the development loop (cargo leptos watch)
#
# Every install step checks first and skips what is already there, so both are idempotent.

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

CARGO_LEPTOS_VERSION := 0.3.10
# The wasm-bindgen CLI must equal the wasm-bindgen crate locked in Cargo.lock.
WASM_BINDGEN_VERSION := $(shell awk '/^name = "wasm-bindgen"$$/ {getline; gsub(/version = |"/, ""); print; exit}' Cargo.lock)
CARGO_HOME ?= $(HOME)/.cargo
export PATH := $(CARGO_HOME)/bin:$(PATH)
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

# How the server and the WASM are built: the settings Leptos reads at compile time (asset
# names, site layout) and erased component types (deep view types otherwise overflow the
# compiler's query depth). `cargo test` uses the same, so tests and builds share artifacts.
LEPTOS_ENV := LEPTOS_OUTPUT_NAME=confab LEPTOS_SITE_ROOT=target/site LEPTOS_SITE_PKG_DIR=pkg \
	LEPTOS_SITE_ADDR=127.0.0.1:3000 LEPTOS_RELOAD_PORT=3001 LEPTOS_LIB_DIR=frontend LEPTOS_BIN_DIR=server \
	LEPTOS_JS_MINIFY=false LEPTOS_HASH_FILES=false
TEST_ENV := RUSTFLAGS="--cfg erase_components" $(LEPTOS_ENV)
WASM := wasm32-unknown-unknown
SITE := target/site
# Tools only a build needs, installed into the repository (npm's binaryen 132: Debian's 108
# breaks hydration).
TOOLS := target/tools
WASM_OPT := $(TOOLS)/node_modules/.bin/wasm-opt
BINARYEN_VERSION := 132.0.0
# Size first. `-Os` left the readers' WASM smaller with Brotli than `-Oz` (which is smaller
# uncompressed), and flattening and re-looping first smaller still (README, "First load").
WASM_OPT_FLAGS := --flatten --rereloop -Os -Os --enable-bulk-memory --enable-nontrapping-float-to-int \
	--enable-sign-ext --enable-mutable-globals
# Writes a Brotli (quality 11) and a gzip (level 9) copy next to each file given.
PRECOMPRESS := const z = require("zlib"), fs = require("fs"); for (const f of process.argv.slice(1)) { const b = fs.readFileSync(f); fs.writeFileSync(f + ".br", z.brotliCompressSync(b, { params: { [z.constants.BROTLI_PARAM_QUALITY]: 11 } })); fs.writeFileSync(f + ".gz", z.gzipSync(b, { level: 9 })); }

.PHONY: help run test build release site bench-tools bench-first-load test-rust test-e2e test-release-wasm test-release bundles lint setup setup-run \
	deps-apt-test deps-wasm-target deps-wasm-bindgen deps-binaryen deps-npm dev

help:
	@echo "make run    install what running needs, build the optimized app, serve it on http://127.0.0.1:3000"
	@echo "make test   install what testing needs, build, run every Rust test and the Playwright suite"
	@echo "make lint   cargo fmt --check and clippy for the server and the WASM"
	@echo "make dev    cargo leptos watch (rebuilds and reloads on every change; installs cargo-leptos)"

run: setup-run release
	./target/release/confab

test: setup build test-rust test-e2e test-release-wasm

# The build the tests run against: the debug server, then the WASM bundles (the wasm-test
# profile: optimized without LTO, with debug assertions; see Cargo.toml) and the site.
build:
	$(TEST_ENV) cargo build -p server --bin confab
	$(MAKE) --no-print-directory bundles PROFILE=wasm-test
	$(MAKE) --no-print-directory site PROFILE=wasm-test OPTIMIZE= HASH=

# The optimized build `make run` serves: a release server, the WASM bundles with the
# wasm-release profile and wasm-opt, every asset fingerprinted (cached for a year) and
# precompressed.
release:
	$(TEST_ENV) cargo build -p server --bin confab --release
	$(MAKE) --no-print-directory bundles PROFILE=wasm-release
	$(MAKE) --no-print-directory site PROFILE=wasm-release OPTIMIZE=yes HASH=yes

# The two WASM bundles (app/src/routing.rs, `Bundle`): the readers' (home, rooms, 404) and
# the full one (every page, with sign-in and the operators' dashboard), each copied to its
# own name, as the second build writes the same frontend.wasm.
BUNDLES := confab confab-full
bundles:
	$(TEST_ENV) cargo build -p frontend --lib --target $(WASM) --profile $(PROFILE)
	cp target/$(WASM)/$(PROFILE)/frontend.wasm target/$(WASM)/$(PROFILE)/confab.wasm
	$(TEST_ENV) cargo build -p frontend --lib --target $(WASM) --profile $(PROFILE) --features full
	cp target/$(WASM)/$(PROFILE)/frontend.wasm target/$(WASM)/$(PROFILE)/confab-full.wasm

# target/site from the built bundles: wasm-bindgen's JS glue, the stylesheet and public/.
# With OPTIMIZE, each WASM is shrunk after wasm-bindgen (which must read it as rustc wrote
# it): frontend/drop-async-hydration.mjs removes async hydration, which Confab never uses,
# then wasm-opt (WASM_OPT_FLAGS) optimizes for size; the two bundles in parallel.
# With HASH, each file is named by its content (confab.<hash>.js) and the hashes are
# written next to the release server (target/release/hash.txt and hash-full.txt, where
# Leptos looks for them); every asset also gets .br and .gz siblings, which the server sends
# to clients that accept them.
site:
	rm -rf $(SITE) && mkdir -p $(SITE)/pkg
	for bundle in $(BUNDLES); do \
		wasm-bindgen --target web --no-typescript --out-dir $(SITE)/pkg --out-name $$bundle \
			target/$(WASM)/$(PROFILE)/$$bundle.wasm && \
		mv $(SITE)/pkg/$${bundle}_bg.wasm $(SITE)/pkg/$$bundle.wasm; \
	done
	cp style/main.css $(SITE)/pkg/confab.css
	cp -r public/. $(SITE)/
	@if [ -n "$(OPTIMIZE)" ]; then \
		pids=; \
		for bundle in $(BUNDLES); do \
			wasm=$(SITE)/pkg/$$bundle.wasm; \
			( node frontend/drop-async-hydration.mjs $$wasm $$wasm.pruned && \
			  $(WASM_OPT) $(WASM_OPT_FLAGS) -o $$wasm $$wasm.pruned && rm $$wasm.pruned ) & pids="$$pids $$!"; \
		done; \
		for pid in $$pids; do wait $$pid || exit 1; done; \
	fi
	@if [ -n "$(HASH)" ]; then \
		for bundle in $(BUNDLES); do \
			hashes=target/release/hash$${bundle#confab}.txt; \
			: > $$hashes; \
			kinds="js wasm"; [ $$bundle = confab ] && kinds="js wasm css"; \
			for kind in $$kinds; do \
				hash=$$(sha256sum $(SITE)/pkg/$$bundle.$$kind | cut -c1-16); \
				mv $(SITE)/pkg/$$bundle.$$kind $(SITE)/pkg/$$bundle.$$hash.$$kind; \
				echo "$$kind: $$hash" >> $$hashes; \
			done; \
		done; \
		node -e '$(PRECOMPRESS)' $(SITE)/pkg/*.js $(SITE)/pkg/*.wasm $(SITE)/pkg/*.css; \
		ls -l $(SITE)/pkg; \
	else rm -f target/debug/hash.txt target/debug/hash-full.txt; fi

test-rust:
	$(TEST_ENV) cargo test --workspace --exclude frontend --features app/ssr

test-e2e:
	cd end2end && npx playwright test

# The WASM `make run` serves (the wasm-release profile: LTO, opt-level z; async hydration
# dropped and wasm-opt, as OPTIMIZE does for `make release`), hydrated in a
# browser: a hydration failure once showed only there, while every test passed against the
# wasm-test build. The debug server serves it from a site of its own (same pages, same
# markup); the specs that go through every page and between pages run against it.
RELEASE_WASM_SITE := target/site-release-wasm
test-release-wasm:
	$(MAKE) --no-print-directory bundles PROFILE=wasm-release
	$(MAKE) --no-print-directory site SITE=$(RELEASE_WASM_SITE) PROFILE=wasm-release OPTIMIZE=yes HASH=
	cd end2end && LEPTOS_SITE_ROOT=$(CURDIR)/$(RELEASE_WASM_SITE) npx playwright test \
		--project=desktop-light tests/navigation.spec.ts tests/looks.spec.ts tests/chat.spec.ts

# The whole browser suite against the optimized build `make run` serves (release server and
# WASM). Not part of `make test`: the release builds would double its time.
test-release: setup release
	cd end2end && CONFAB_BIN=$(CURDIR)/target/release/confab npx playwright test

# The release server and the channel fan-out load generator, for server/bench/channel-fanout.sh.
bench-tools:
	$(TEST_ENV) cargo build -p server --release --bin confab --example channel_fanout

# First load over throttled phone networks, against the optimized build (see README).
bench-first-load: setup release
	cd end2end && CONFAB_BIN=$(CURDIR)/target/release/confab npx playwright test -c perf.config.ts

# The development loop: cargo-leptos rebuilds and reloads the page on every change.
dev: deps-wasm-target deps-wasm-bindgen
	@if cargo leptos --version 2>/dev/null | grep -q " $(CARGO_LEPTOS_VERSION)$$"; then echo "cargo-leptos $(CARGO_LEPTOS_VERSION): present"; else \
		cargo install --locked --features no_downloads cargo-leptos@$(CARGO_LEPTOS_VERSION); fi
	cargo leptos watch

lint:
	cargo fmt --all -- --check
	$(TEST_ENV) cargo clippy -p server -p app --features app/ssr --all-targets -- -D warnings
	$(TEST_ENV) cargo clippy -p frontend --target wasm32-unknown-unknown -- -D warnings
	$(TEST_ENV) cargo clippy -p frontend --target wasm32-unknown-unknown --features full -- -D warnings

# What running needs: the WASM target, the wasm-bindgen CLI and wasm-opt. Testing adds
# Chromium, redis-server and the Playwright packages.
setup-run: deps-wasm-target deps-wasm-bindgen deps-binaryen
setup: deps-apt-test deps-wasm-target deps-wasm-bindgen deps-binaryen deps-npm

# Debian's Chromium for Playwright (never a downloaded browser), redis-server for the
# multi-instance tests and nginx for the load balancer test (the tests start both themselves
# on free loopback ports; the packages' own services are not needed).
deps-apt-test:
	@if [ -x /usr/bin/chromium ] && command -v redis-server >/dev/null && [ -x /usr/sbin/nginx ]; then echo "chromium, redis-server, nginx: present"; else \
		$(SUDO) apt-get update && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y chromium redis-server nginx-light; fi

deps-wasm-target:
	@if rustup target list --installed | grep -qx wasm32-unknown-unknown; then echo "wasm32 target: present"; else \
		rustup target add wasm32-unknown-unknown; fi

# wasm-bindgen-cli's own lockfile pins a webpki-roots release this registry lacks: install it
# from an unpacked copy with that one dependency moved to the release before.
deps-wasm-bindgen:
	@test -n "$(WASM_BINDGEN_VERSION)" || { echo "no wasm-bindgen in Cargo.lock" >&2; exit 1; }
	@if wasm-bindgen --version 2>/dev/null | grep -q " $(WASM_BINDGEN_VERSION)$$"; then echo "wasm-bindgen $(WASM_BINDGEN_VERSION): present"; else \
		cargo info --quiet wasm-bindgen-cli@$(WASM_BINDGEN_VERSION) >/dev/null; \
		src=$$(ls -d $(CARGO_HOME)/registry/src/*/wasm-bindgen-cli-$(WASM_BINDGEN_VERSION) | head -n 1); \
		work=$$(mktemp -d); cp -r "$$src" "$$work/cli"; \
		(cd "$$work/cli" && cargo update --quiet -p webpki-roots --precise 1.0.10 && cargo install --path . --locked); \
		rm -rf "$$work"; fi

deps-binaryen:
	@if $(WASM_OPT) --version 2>/dev/null | grep -q "version $(BINARYEN_VERSION:.0.0=)"; then echo "wasm-opt (binaryen $(BINARYEN_VERSION)): present"; else \
		mkdir -p $(TOOLS) && npm install --no-audit --no-fund --no-save --prefix $(TOOLS) binaryen@$(BINARYEN_VERSION); fi

deps-npm:
	@if [ -f end2end/node_modules/.package-lock.json ] && [ end2end/node_modules/.package-lock.json -nt end2end/package-lock.json ]; then \
		echo "end2end npm packages: present"; else (cd end2end && npm ci --no-audit --no-fund); fi

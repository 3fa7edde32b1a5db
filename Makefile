# Confab: the two commands of the README, and the steps they are made of.
#
#   make run    install what is missing, build, serve on http://127.0.0.1:3000 (memory engine)
#   make test   install what is missing, build, run every Rust test and the Playwright suite
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

# cargo-leptos builds with these; `cargo test` uses the same so both share one build.
TEST_ENV := RUSTFLAGS="--cfg erase_components" LEPTOS_OUTPUT_NAME=confab LEPTOS_SITE_ROOT=target/site \
	LEPTOS_SITE_PKG_DIR=pkg LEPTOS_SITE_ADDR=127.0.0.1:3000 LEPTOS_RELOAD_PORT=3001 LEPTOS_LIB_DIR=frontend \
	LEPTOS_BIN_DIR=server LEPTOS_JS_MINIFY=false LEPTOS_HASH_FILES=false

.PHONY: help run test build test-rust test-e2e lint setup deps-apt deps-wasm-target deps-cargo-leptos deps-wasm-bindgen deps-npm

help:
	@echo "make run    install what is missing, build, serve on http://127.0.0.1:3000"
	@echo "make test   install what is missing, run every Rust test and the Playwright suite"
	@echo "make lint   cargo fmt --check and clippy for the server and the WASM"

run: setup build
	./target/debug/confab

test: setup build test-rust test-e2e

build:
	cargo leptos build

test-rust:
	$(TEST_ENV) cargo test --workspace --exclude frontend --features app/ssr

test-e2e:
	cd end2end && npx playwright test

lint:
	cargo fmt --all -- --check
	$(TEST_ENV) cargo clippy -p server -p app --features app/ssr --all-targets -- -D warnings
	$(TEST_ENV) cargo clippy -p frontend --target wasm32-unknown-unknown -- -D warnings

setup: deps-apt deps-wasm-target deps-cargo-leptos deps-wasm-bindgen deps-npm

# Debian's Chromium for Playwright (never a downloaded browser) and redis-server for the
# multi-instance tests (the tests start it themselves on free loopback ports).
deps-apt:
	@if [ -x /usr/bin/chromium ] && command -v redis-server >/dev/null; then echo "chromium, redis-server: present"; else \
		$(SUDO) apt-get update && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y chromium redis-server; fi

deps-wasm-target:
	@if rustup target list --installed | grep -qx wasm32-unknown-unknown; then echo "wasm32 target: present"; else \
		rustup target add wasm32-unknown-unknown; fi

# no_downloads: cargo-leptos must never fetch tools itself; it uses those on PATH.
deps-cargo-leptos:
	@if cargo leptos --version 2>/dev/null | grep -q " $(CARGO_LEPTOS_VERSION)$$"; then echo "cargo-leptos $(CARGO_LEPTOS_VERSION): present"; else \
		cargo install --locked --features no_downloads cargo-leptos@$(CARGO_LEPTOS_VERSION); fi

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

deps-npm:
	@if [ -f end2end/node_modules/.package-lock.json ] && [ end2end/node_modules/.package-lock.json -nt end2end/package-lock.json ]; then \
		echo "end2end npm packages: present"; else (cd end2end && npm ci --no-audit --no-fund); fi

# berth — one command runs it, one command tests it (as root, on Debian).
#   make run    install what is missing, build, start berthd with its defaults
#   make test   install test dependencies, run fmt/clippy/unit tests and the e2e suite
#   make bench  pull+unpack benchmark, side by side with containerd when installed

SHELL := /bin/bash
CARGO ?= $(shell command -v cargo || echo $$HOME/.cargo/bin/cargo)
PREFIX ?= /usr/local

# Debian packages: build needs protoc; tests need a real registry, busybox for test images,
# CNI plugins, iproute2 for the test network namespace.
BUILD_DEBS := protobuf-compiler build-essential pkg-config ca-certificates curl
TEST_DEBS := docker-registry busybox-static containernetworking-plugins iproute2 openssl

.PHONY: all build release run test unit e2e lint deps-build deps-test rust bench install clean

all: build

deps-build:
	@missing=""; for p in $(BUILD_DEBS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then echo "installing:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; fi

deps-test: deps-build
	@missing=""; for p in $(TEST_DEBS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then echo "installing:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; fi

rust:
	@command -v $(CARGO) >/dev/null 2>&1 || { \
	  echo "installing the Rust stable toolchain (rustup)"; \
	  curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal --default-toolchain stable; }
	@$(CARGO) fmt --version >/dev/null 2>&1 || rustup component add rustfmt clippy

build: deps-build rust
	$(CARGO) build --workspace --bins

release: deps-build rust
	$(CARGO) build --release -p berth -p berth-shim --bins

run: release
	./target/release/berthd $(ARGS)

lint: rust
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

unit: build
	$(CARGO) test -p berth --lib --bins
	$(CARGO) test -p berth-shim

# The test bed's own tests start registries: run them in a private network namespace.
e2e: build
	$(CARGO) test -p berth-e2e --no-run
	unshare --net -- sh -c 'ip link set lo up && exec $(CARGO) test --offline -p berth-e2e --lib'
	$(CARGO) test -p berth-e2e --test cri -- --test-threads=2

test: deps-test lint unit e2e

bench: deps-test rust
	@command -v containerd >/dev/null || { apt-get update -qq; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq containerd runc; }
	$(CARGO) build --release --workspace --bins
	$(CARGO) bench -p berth-e2e --bench pull

install: release
	install -m 0755 target/release/berthd target/release/berth target/release/berth-shim $(PREFIX)/bin/
	install -d /etc/berth
	[ -f /etc/berth/berth.toml ] || install -m 0644 config/berth.toml /etc/berth/berth.toml

clean:
	$(CARGO) clean

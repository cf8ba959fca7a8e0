# berth — one command runs it, one command tests it (as root, on Debian).
#   make run    install what is missing, build, start berthd with its defaults
#   make test   install test dependencies, run fmt/clippy/unit tests, the e2e suite, the
#               cgroup v2 tests in a VM (make test-cgroup2) and berthd.service under systemd in
#               a VM (make test-systemd)
#   make bench  pull, pod, container, memory and exec benchmarks, side by side with containerd

SHELL := /bin/bash
CARGO ?= $(shell command -v cargo || echo $$HOME/.cargo/bin/cargo)
PREFIX ?= /usr/local

# Debian packages: build needs protoc; tests need a real registry, busybox for test images,
# CNI plugins, iproute2 and iptables (portmap) for the test network namespace; tmux (a real pty
# for the cli suite's `berth run -it`); prometheus (the metrics suite scrapes berthd); qemu, kmod
# and cpio for the cgroup v2 test VM (e2e/cg2vm).
BUILD_DEBS := protobuf-compiler build-essential pkg-config ca-certificates curl
TEST_DEBS := docker-registry busybox-static containernetworking-plugins iproute2 iptables openssl \
	qemu-system-x86 kmod cpio python3-venv tmux prometheus
E2E_PYTHON := target/e2e-python/bin/python

.PHONY: all build release run test test-cgroup2 test-systemd unit e2e lint deps-build deps-test rust bench install install-files uninstall clean critest chaos fuzz fuzz-cri

all: build

deps-build:
	@missing=""; for p in $(BUILD_DEBS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then echo "installing:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; fi

deps-test: deps-build
	@missing=""; for p in $(TEST_DEBS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then echo "installing:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; fi
	@# A gRPC client of another language for e2e: a current grpcio (gRPC C-core) from PyPI.
	@$(E2E_PYTHON) -c 'import grpc' 2>/dev/null || { echo "installing grpcio (PyPI) into target/e2e-python"; \
	  rm -rf target/e2e-python && /usr/bin/python3 -m venv target/e2e-python && \
	  target/e2e-python/bin/pip install -q 'grpcio>=1.57'; }

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
	$(CARGO) test -p berth-proto -p berth-sys -p berth-cgroups

# The test bed's own tests start registries: run them in a private network namespace.
# The suites share one harness (e2e/tests/e2e/main.rs) and are picked by their name prefix:
# each runs in a process (and so a network namespace) of its own.
e2e: build
	$(CARGO) test -p berth-e2e --no-run
	unshare --net -- sh -c 'ip link set lo up && exec $(CARGO) test --offline -p berth-e2e --lib'
	$(CARGO) test -p berth-e2e --test e2e -- cri:: --test-threads=2
	$(CARGO) test -p berth-e2e --test e2e -- resources:: --test-threads=2
	$(CARGO) test -p berth-e2e --test e2e -- network:: --test-threads=1
	$(CARGO) test -p berth-e2e --test e2e -- streaming:: --test-threads=2
	$(CARGO) test -p berth-e2e --test e2e -- cli:: --test-threads=2
	$(CARGO) test -p berth-e2e --test e2e -- metrics:: --test-threads=2

# cargo-fuzz targets (fuzz/, a workspace of its own; not part of `make test`): each of
# FUZZ_TARGETS runs FUZZ_SECONDS (600) without a crash or the target fails. cargo-fuzz comes from
# crates.io; its instrumentation flags need nightly features, which the machine's stable
# toolchain grants with RUSTC_BOOTSTRAP=1. fuzz/seeds/<target> start the corpus (sample layers and
# registry documents); crashes land in fuzz/artifacts/<target>/.
FUZZ_SECONDS ?= 600
FUZZ_TARGETS ?= tar_unpack registry_documents image_reference spdy_frames ws_session cri_log \
	seccomp_compile
fuzz: deps-build rust
	@command -v cargo-fuzz >/dev/null 2>&1 || $(CARGO) install cargo-fuzz --locked
	cd fuzz && for t in $(FUZZ_TARGETS); do \
	  mkdir -p corpus/$$t; seeds=$$( [ -d seeds/$$t ] && echo seeds/$$t ); \
	  RUSTC_BOOTSTRAP=1 $(CARGO) fuzz run --sanitizer none $$t corpus/$$t $$seeds -- \
	    -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=4096 -timeout=30 || exit 1; done

# Chaos (issue 12): CHAOS_OPS random CRI operations over CHAOS_PODS pods with berthd kill -9ed
# (also in the middle of calls), shims killed and a CNI plugin failing ADD now and then; then
# every pod and container must be as acknowledged, and nothing may be left after removing all.
# Bounded (a few minutes at the defaults, 500 and 20); not part of `make test`. CHAOS_SEED replays.
chaos: deps-test build
	$(CARGO) test -p berth-e2e --test e2e --no-run
	$(CARGO) test -p berth-e2e --test e2e -- chaos:: --test-threads=1 --nocapture

# The CRI request fuzzer (e2e/tests/e2e/fuzz.rs), never part of `make test`: FUZZ_REQUESTS
# (3000) mutated and valid requests over every CRI call; FUZZ_SEED replays a run.
FUZZ_REQUESTS ?= 3000
fuzz-cri: deps-test build
	$(CARGO) test -p berth-e2e --test e2e --no-run
	FUZZ_REQUESTS=$(FUZZ_REQUESTS) $(if $(FUZZ_SEED),FUZZ_SEED=$(FUZZ_SEED)) $(CARGO) test -p berth-e2e --test e2e -- fuzz:: --test-threads=1 --nocapture

# The e2e harness (e2e/tests/e2e/main.rs, harness=false) run on a pure cgroup v2 kernel in a
# throwaway VM (e2e/cg2vm): built here, run there from the shared tree; berthd and berth-shim are
# found next to it. CG2VM_TEST picks the tests: a suite's prefix (`cri::`), or one test's full
# name with CG2VM_ARGS=--exact; CG2VM_ARGS go to the test binary after it.
CG2VM_TEST ?= resources::
CG2VM_ARGS ?=
CG2VM_MEM ?= 4G
test-cgroup2: deps-test build
	@bin=$$($(CARGO) test -p berth-e2e --test e2e --no-run --message-format=json \
	  | grep '"reason":"compiler-artifact"' | grep '"name":"e2e"' \
	  | grep -o '"executable":"[^"]*"' | cut -d'"' -f4 | tail -1); \
	[ -x "$$bin" ] || { echo "test-cgroup2: no test executable for the e2e harness" >&2; exit 1; }; \
	echo "cg2vm: $$bin --test-threads=1 $(CG2VM_TEST) $(CG2VM_ARGS)"; \
	time e2e/cg2vm --share $(CURDIR) --mem $(CG2VM_MEM) -- "$$bin" --test-threads=1 $(CG2VM_TEST) $(CG2VM_ARGS)

# In a VM whose PID 1 is the host's systemd (e2e/cg2vm --systemd), each in a process of its own:
# the e2e suite systemd:: (e2e/tests/e2e/systemd.rs: berthd installed as a systemd service with
# `make install-files` from the debug build, systemd-analyze verify, systemctl start
# (Type=notify), a pod, systemctl restart under KillMode=process and control-group with the
# container still running, make uninstall) and systemd_driver:: (the systemd cgroup driver).
test-systemd: deps-test build
	@bin=$$($(CARGO) test -p berth-e2e --test e2e --no-run --message-format=json \
	  | grep '"reason":"compiler-artifact"' | grep '"name":"e2e"' \
	  | grep -o '"executable":"[^"]*"' | cut -d'"' -f4 | tail -1); \
	[ -x "$$bin" ] || { echo "test-systemd: no test executable for the e2e harness" >&2; exit 1; }; \
	echo "cg2vm --systemd: $$bin --test-threads=1 systemd:: and systemd_driver::"; \
	time e2e/cg2vm --systemd --share $(CURDIR) --mem $(CG2VM_MEM) -- env BERTH_E2E_SYSTEMD=1 \
	  sh -c '"$$0" --test-threads=1 systemd:: && "$$0" --test-threads=1 systemd_driver::' "$$bin"

test: deps-test lint unit e2e test-cgroup2 test-systemd

# cri-tools' critest (built by hand, never by this Makefile: see README) against a debug berthd
# in a private network namespace, with stand-in images (e2e/src/critest_images.rs). Not part of
# `make test`. CRITEST=/path/to/critest (default: on PATH), CRITEST_ARGS='--ginkgo.focus=...'.
# Without critest it says how to get it and succeeds. The harness is run directly, not through
# cargo, so no cargo lock is held while critest runs.
critest: deps-test rust
	@# critest's AppArmor specs load their profiles with `sudo apparmor_parser` where the kernel
	@# has AppArmor (the cgroup v2 VM's Debian kernel does); elsewhere they skip.
	@missing=""; command -v sudo >/dev/null || missing="$$missing sudo"; \
	  command -v apparmor_parser >/dev/null || missing="$$missing apparmor"; \
	  if [ -n "$$missing" ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; fi
	$(CARGO) build -p berth -p berth-shim --bins
	@bin=$$($(CARGO) test -p berth-e2e --test critest --no-run --message-format=json \
	  | grep '"reason":"compiler-artifact"' | grep '"name":"critest"' \
	  | grep -o '"executable":"[^"]*"' | cut -d'"' -f4 | tail -1); \
	[ -x "$$bin" ] || { echo "critest: no test executable" >&2; exit 1; }; \
	"$$bin"

bench: deps-test rust
	@command -v containerd >/dev/null || { apt-get update -qq; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq containerd runc; }
	$(CARGO) build --release --workspace --bins
	$(CARGO) bench -p berth-e2e --bench pull
	$(CARGO) bench -p berth-e2e --bench runtime

# install: the binaries, the config, crictl's config and a pod network when the node has none, and
# the systemd unit (deploy/berthd.service), enabled when systemd runs the machine. Files an operator
# may have edited (/etc/berth/berth.toml, /etc/crictl.yaml) are never overwritten.
# install-files: the same from already built binaries in BIN_SRC (default target/release; `make
# test-systemd` installs a debug build with it), without building.
# uninstall: the binaries and the unit (stopped and disabled first); configs and data stay.
SYSTEMD_UNIT_DIR ?= /etc/systemd/system
BIN_SRC ?= target/release
install: release
	$(MAKE) install-files BIN_SRC=target/release

install-files:
	install -d $(PREFIX)/bin
	install -m 0755 $(BIN_SRC)/berthd $(BIN_SRC)/berth $(BIN_SRC)/berth-shim $(PREFIX)/bin/
	install -d /etc/berth
	[ -f /etc/berth/berth.toml ] || install -m 0644 config/berth.toml /etc/berth/berth.toml
	[ -f /etc/crictl.yaml ] || install -m 0644 deploy/crictl.yaml /etc/crictl.yaml
	# A pod network for a node that has none yet (bridge berth0, 10.88.0.0/16, masquerading).
	install -d /etc/cni/net.d
	ls /etc/cni/net.d/*.conf* >/dev/null 2>&1 || install -m 0644 config/10-berth.conflist /etc/cni/net.d/
	install -d $(SYSTEMD_UNIT_DIR)
	sed 's|@BINDIR@|$(PREFIX)/bin|g' deploy/berthd.service >$(SYSTEMD_UNIT_DIR)/berthd.service
	chmod 0644 $(SYSTEMD_UNIT_DIR)/berthd.service
	if [ -d /run/systemd/system ]; then systemctl daemon-reload && systemctl enable berthd; \
	else echo "systemd is not running: start $(PREFIX)/bin/berthd yourself"; fi

uninstall:
	if [ -d /run/systemd/system ] && [ -f $(SYSTEMD_UNIT_DIR)/berthd.service ]; then \
	  systemctl disable --now berthd || true; fi
	rm -f $(SYSTEMD_UNIT_DIR)/berthd.service
	if [ -d /run/systemd/system ]; then systemctl daemon-reload; fi
	rm -f $(PREFIX)/bin/berthd $(PREFIX)/bin/berth $(PREFIX)/bin/berth-shim
	@echo "kept: /etc/berth, /etc/crictl.yaml, /etc/cni/net.d, /var/lib/berth (remove them by hand)"

clean:
	$(CARGO) clean

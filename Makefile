# DiffusionRL: `make demo` and `make test` are the two commands. Each installs what is missing.
SHELL := /bin/bash
SWIFT ?= swift
APT_PACKAGES := libopenblas-dev libhdf5-dev zlib1g-dev hdf5-tools libopenmpi-dev openmpi-bin
# Only the tests need these (a headless browser renders the run report); without root they are
# skipped with a message instead of failing the build.
TEST_APT_PACKAGES := chromium
THREADS ?= 2
BIN := .build/release/diffusion-rl

.PHONY: demo test deps test-deps build bench clean

# Installs the system libraries when missing: with apt-get when root, else prints the command.
deps:
	@missing=""; for p in $(APT_PACKAGES); do \
	  dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing:$$missing"; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing) >/dev/null || exit 1; \
	  else \
	    echo "missing system packages; run: sudo apt-get install -y$$missing"; exit 1; \
	  fi; \
	fi
	@command -v $(SWIFT) >/dev/null || { echo "no Swift toolchain on PATH (need Swift 6)"; exit 1; }

# The tests' own packages: installed when root, else the test that needs them says it skipped.
test-deps:
	@missing=""; for p in $(TEST_APT_PACKAGES); do \
	  dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing (for the tests):$$missing"; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing) >/dev/null \
	      || echo "could not install$$missing; the tests that need it will be skipped"; \
	  else \
	    echo "not installed:$$missing (the report-rendering test will be skipped); to run it: sudo apt-get install -y$$missing"; \
	  fi; \
	fi

build: deps
	$(SWIFT) build -c release

# Tests build in release mode (numeric kernels are 5–600× slower in debug) with testability on.
test: deps test-deps
	$(SWIFT) build -c release --build-tests -Xswiftc -enable-testing
	$(SWIFT) test -c release -Xswiftc -enable-testing --skip-build --disable-swift-testing

bench: build
	$(BIN) bench engine --threads $(THREADS)

# The main job: self-training the shipped base model (Models/base) on the reward model's safety head, then every gold perspective before and after.
demo: build
	$(BIN) demo --threads $(THREADS)

clean:
	rm -rf .build

# IntNW Lab. `make help` lists the targets.
SHELL := /bin/bash
SWIFT ?= swift
PREFIX ?= intnw
NAME ?= multiapp
ARGS ?=
N ?= 8
# Debian packages the project needs: headers for libpcap/libmnl, the tools the topology and
# analyzer drive (ip, tc, ethtool), tcpdump/tshark for cross-checks, gnuplot for plots, GNU parallel
# for trials as jobs (a test runs a plan through it), python3 for tools/check-run.py.
DEB_PACKAGES := libpcap-dev libmnl-dev pkg-config iproute2 ethtool tcpdump tshark gnuplot-nox procps psmisc kmod parallel python3

RELEASE_BIN = .build/release
LAB = $(RELEASE_BIN)/intnw-lab

.PHONY: help setup build release test test-unit test-netns test-slurm bench experiment fairness regress clean fuzz

help:
	@echo "make setup                 install the Debian packages the project needs (idempotent)"
	@echo "make build                 debug build of every target"
	@echo "make test                  setup + build + every test (namespace tests need root)"
	@echo "make bench                 emulator / IntNW / analyzer benchmarks, printed as ratios"
	@echo "make experiment NAME=...   run one experiment (intnw-lab experiment list)"
	@echo "make fairness [N=8]        fairness scaling runs"
	@echo "make regress               regression checks against regress/baseline.json"
	@echo "make test-slurm            opt-in: a quick plan as a Slurm job array on a local single-node Slurm"
	@echo "make clean                 remove build products and leftover namespaces/devices"

setup:
	@missing=$$(for p in $(DEB_PACKAGES); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "setup: installing $$missing"; \
		if [ "$$(id -u)" != 0 ]; then echo "setup: need root to install packages (run as root or install: $$missing)"; exit 1; fi; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null || exit 1; \
	else echo "setup: all system packages present"; fi

build: setup
	$(SWIFT) build

release: setup
	$(SWIFT) build -c release

test: setup
	bash scripts/run-tests.sh

bench: release
	$(RELEASE_BIN)/intnw-bench

experiment: release
	$(LAB) experiment $(NAME) $(ARGS)

fairness: release
	$(LAB) experiment fairness --max-apps $(N) $(ARGS)

regress: release
	$(LAB) regress $(ARGS)

# Opt-in, not part of `make test` or CI: installs slurm-wlm and munge, starts munged, slurmctld and slurmd on
# localhost, runs a quick multiapp plan as a job array plus its merge job, and stops them again.
test-slurm: build
	bash scripts/test-slurm.sh

clean:
	-bash netns-scripts/topology.sh reclaim
	rm -rf .build

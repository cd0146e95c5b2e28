# Two commands for a fresh machine (see README.md):
#   make run    set up, get the data, run the default study
#   make test   set up, run the test suite
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c

VENV ?= .venv
PY := $(VENV)/bin/python
# Snakemake --cores: this machine's CPUs (training jobs take 2 threads each).
CORES ?= $(shell nproc 2>/dev/null || echo 2)
# Debian packages, installed only where apt works (root): the study needs the
# real Fashion-MNIST; the tests also start a real PostgreSQL (Optuna storage).
# SLURM's packages are installed by tests/slurm/cluster.sh when its tests run.
RUN_PACKAGES := dataset-fashion-mnist
TEST_PACKAGES := $(RUN_PACKAGES) postgresql

.PHONY: setup system-deps-run system-deps-test apt-install data run test lint clean-venv

setup: $(VENV)/.installed

# Reinstall when the dependency list changes. pip's "location ignored" chatter is dropped.
$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip 2>&1 | { grep -v 'is ignored: it is neither' || true; }
	$(VENV)/bin/pip install -q -e '.[dev]' 2>&1 | { grep -v 'is ignored: it is neither' || true; }
	touch $@

# Where apt works (root on Debian/Ubuntu) the real Fashion-MNIST comes from Debian's
# dataset-fashion-mnist; elsewhere `hpsweep data fetch` downloads the official files.
system-deps-run:
	@$(MAKE) --no-print-directory apt-install PACKAGES="$(RUN_PACKAGES)"

system-deps-test:
	@$(MAKE) --no-print-directory apt-install PACKAGES="$(TEST_PACKAGES)"

apt-install:
	@missing=$$(for p in $(PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing Debian packages: $$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	elif [ -n "$$missing" ]; then \
	  echo "note: not installing $$missing (needs root and apt): Fashion-MNIST is downloaded instead, and the PostgreSQL tests skip"; \
	fi

data: setup system-deps-run
	$(VENV)/bin/hpsweep data fetch

run: data
	$(VENV)/bin/snakemake --profile profiles/local --cores $(CORES)

test: setup system-deps-test
	$(PY) -m pytest $(PYTEST_ARGS)

lint: setup
	$(VENV)/bin/ruff check src tests workflow/scripts benchmarks

clean-venv:
	rm -rf $(VENV)

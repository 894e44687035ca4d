# josef: `make run` serves a single broker, `make test` runs the whole suite.
VENV    := .venv
# Prefer Python 3.12+ (zero-copy transport.writelines); fall back to any python3 >= 3.11.
PYTHON  ?= $(shell for p in python3.12 python3.13 $(wildcard $(HOME)/.pyenv/versions/3.12*/bin/python3) python3; do \
             $$p -c 'import sys; assert sys.version_info >= (3, 11)' >/dev/null 2>&1 && { echo $$p; break; }; done)
PIP     := $(VENV)/bin/pip
STAMP   := $(VENV)/.installed
TSTAMP  := $(VENV)/.test-installed

.PHONY: install run test test-deps system-deps clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -n "$(PYTHON)" || { echo "need Python >= 3.11"; exit 1; }
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -e .
	touch $@

run: install
	$(VENV)/bin/josef serve

# ZooKeeper (Debian package) for the cluster tests and nftables for the network-partition
# test, installed only where missing.
SYSTEM_PKGS = $(if $(wildcard /usr/share/java/zookeeper.jar),,zookeeper) $(if $(wildcard /usr/sbin/nft),,nftables)
system-deps:
	@if [ -n "$(strip $(SYSTEM_PKGS))" ]; then \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(SYSTEM_PKGS) >/dev/null; fi

test-deps: $(TSTAMP) system-deps

$(TSTAMP): $(STAMP)
	$(PIP) install -q -e '.[test]'
	touch $@

test: test-deps
	$(VENV)/bin/python -m pytest -q tests

clean:
	rm -rf $(VENV) josef-data

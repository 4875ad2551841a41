# The two commands a new user needs: `make run` and `make test`.
# Both install what they need first (`make setup`, idempotent).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
LISTEN ?= 127.0.0.1:8888
# Where `make run`'s daemon pulls images from over the CRI (there is no
# registry here): one archive per reference, built offline.
MIRROR ?= build/mirror

.PHONY: setup host venv native bundles mirror run test bench conformance clean

setup: host venv native

# Debian packages (runc, crun, busybox-static, iptables, a working CRIU).
host:
	bash native/setup-host.sh

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,bench]'
	touch $@

native: venv
	$(PY) native/build.py

bundles: setup
	$(PY) bundles/build.py

# busybox (the example bundles' busybox-static root) as the image `busybox`,
# so that `crictl pull busybox` / `crictl run` work against `make run`.
mirror: bundles
	mkdir -p $(MIRROR)
	test -s $(MIRROR)/docker.io_library_busybox_latest.tar || { \
	  $(PY) bundles/archives.py $(MIRROR)/busybox.tar.part --name busybox && \
	  mv $(MIRROR)/busybox.tar.part $(MIRROR)/docker.io_library_busybox_latest.tar; }

run: mirror
	$(VENV)/bin/containerd-py daemon --listen $(LISTEN) --image-mirror $(abspath $(MIRROR))

test: bundles
	$(VENV)/bin/pytest -q tests

# `make bench BENCH_ARGS=--quick` for a smoke run (its report goes to bench/out/quick).
bench: bundles
	$(PY) bench/run.py $(BENCH_ARGS)

# critest's Conformance specs against a daemon it starts -> docs/conformance.md
conformance: bundles
	$(PY) tests/cri_conformance.py $(CONFORMANCE_ARGS)

clean:
	rm -rf $(VENV) containerd_py/_bin build *.egg-info
	$(PY) bundles/build.py --clean 2>/dev/null || true

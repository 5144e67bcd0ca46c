# kukeond: `make run` runs the daemon in the foreground, `make test` runs the suite.
SHELL  := /bin/bash
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
RUNDIR := $(CURDIR)/.run
# Tests that need containerd use KUKEOND_TEST_CONTAINERD_SOCKET when set;
# otherwise the suite starts its own private containerd.
TRIAL_ARGS ?= tests

.PHONY: install run test lint protos image bench clean kuke

# The editable install puts the checkout on sys.path (see setup.py), where twistd
# finds twisted/plugins/kukeond_plugin.py. Twisted's plugin caches (the checkout's
# started afresh) are rebuilt once here, so a twistd run by a user who cannot
# write them does not rescan every plugin at each start.
$(VENV)/.installed: setup.py
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[dev]'
	rm -f twisted/plugins/dropin.cache
	$(PY) -c 'from twisted.plugin import IPlugin, getPlugins; list(getPlugins(IPlugin))'
	touch $@

install: $(VENV)/.installed

# The busybox test image, built offline from Debian's busybox-static.
image: install
	$(PY) -m tests.support.image --out $(CURDIR)/.image

protos: install
	$(PY) -m kukeond.containerd.genprotos

run: install
	$(PY) -m kukeond.devrun --run-dir $(RUNDIR)

test: install
	set -o pipefail; $(PY) -m twisted.trial -j2 $(TRIAL_ARGS) 2>&1 | $(PY) -m tests.summarize

lint: install
	$(VENV)/bin/ruff check kukeond tests bench twisted setup.py

bench: install
	for b in bench/*.py; do $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) build dist *.egg-info _trial_temp* .run .image twisted/plugins/dropin.cache
	find . -name __pycache__ -prune -exec rm -rf {} +

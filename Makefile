# kukeond: `make run` runs the daemon in the foreground, `make test` runs the suite.
SHELL  := /bin/bash
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
RUNDIR := $(CURDIR)/.run
# make test runs trial twice, one summary line for both:
# 1. TRIAL_ARGS (the whole suite) on containerd 1.6: KUKEOND_TEST_CONTAINERD_SOCKET
#    when set, otherwise each trial worker starts a private containerd from PATH.
# 2. Every module that uses a real containerd (or TRIAL2_ARGS) again on containerd
#    2.2: KUKEOND_TEST_CONTAINERD2_SOCKET when set, otherwise one private containerd
#    from the reference binaries in KUKEON_REFERENCE_BIN (default ../shared/bin).
#    Without them this run is skipped with one line; with CI=true it fails.
#    CONTAINERD2= leaves it out.
TRIAL_ARGS  ?= tests
TRIAL2_ARGS ?=
CONTAINERD2 ?= yes

.PHONY: install run test lint protos image oci-image bench clean

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

# The kukeond OCI image for kuke init (root; Debian's archive and PyPI on first build):
# .image/kukeond-oci.tar, docker.io/kukeon/kukeond-py:0.5.0. See doc/install.md.
oci-image: install
	$(PY) -m tools.build_oci_image --out $(CURDIR)/.image/kukeond-oci.tar

protos: install
	$(PY) -m tools.genprotos

run: install
	$(PY) -m tools.devrun --run-dir $(RUNDIR)

test: install
	set -o pipefail; { \
	  echo "tests part: whole suite ($${KUKEOND_TEST_CONTAINERD_SOCKET:-private containerd from PATH}): $(TRIAL_ARGS)"; \
	  $(PY) -m twisted.trial -j2 $(TRIAL_ARGS); \
	  if [ -n "$(CONTAINERD2)" ]; then $(PY) -m tests.support.containerd on-2 $(TRIAL2_ARGS); fi; \
	} 2>&1 | $(PY) -m tests.summarize

lint: install
	$(VENV)/bin/ruff check kukeond tests bench tools twisted setup.py
	$(VENV)/bin/ruff format --check kukeond tests bench tools twisted setup.py
	$(VENV)/bin/mypy kukeond
	$(PY) -m tools.layers --check

bench: install
	for b in bench/*.py; do $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) build dist *.egg-info _trial_temp* .run .image twisted/plugins/dropin.cache
	find . -name __pycache__ -prune -exec rm -rf {} +

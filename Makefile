# session-magics: build, test and demo entry points (GNU make).
#
#   make test        everything CI runs: system packages, venv, kernels, browser
#                    check, lint, then the whole suite against a real Secret Service
#   make test-fast   unit tests only (-m "not slow"); needs no system packages
#   make demo        the demo API plus JupyterLab with notebooks/quickstart.ipynb
#   make demo-oauth  an OpenID provider, an API that accepts its tokens, and JupyterLab
#                    with notebooks/oauth.ipynb
#   make lint        ruff check + mypy
#   make idp         the npm packages of the OpenID provider (demo/idp, needs node + npm)
#   make security-report  tests/security against a real Secret Service; figures into docs/SECURITY.md
#   make bench       benchmarks/run.py against a local demo API (its table written into
#                    docs/performance.md), then benchmarks/oauth_logins.py against the tests'
#                    OpenID provider (BENCH_ARGS=--quick: a smoke run, nothing written)
#
# PYTEST_ARGS is passed to pytest, e.g. make test PYTEST_ARGS="-k login -x".

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
.NOTPARALLEL:

PYTHON    ?= python3
VENV      ?= .venv
PY        := $(VENV)/bin/python
STAMP     := $(VENV)/.installed-from-pyproject
LAB_STAMP := $(VENV)/.installed-lab-from-pyproject
ARTIFACTS ?= artifacts
CHROMIUM  ?= /usr/bin/chromium
DEMO_PORT ?= 8765
DEMO_IDP_PORT ?= 8766
DEMO_OAUTH_API_PORT ?= 8767
PYTEST_ARGS ?=

export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: help venv system-deps demo-system-deps demo-oauth-system-deps kernels idp browser-check lint test test-fast demo demo-oauth bench bench-deps clean distclean

help:
	@echo "make test | test-fast | demo | demo-oauth | bench | lint | venv | system-deps | kernels | idp | clean | distclean"

# --- set-up -------------------------------------------------------------------

system-deps:
	@scripts/install-system-deps.sh

demo-system-deps:
	@scripts/install-system-deps.sh --demo --quiet

demo-oauth-system-deps:
	@scripts/install-system-deps.sh --demo --node --quiet

venv: $(STAMP)

# Creates $(VENV) when it is missing or broken.
define ENSURE_VENV
if [ ! -x $(PY) ] || ! $(PY) -m pip --version >/dev/null 2>&1; then \
  rm -rf $(VENV); \
  echo "creating $(VENV) with $$($(PYTHON) --version 2>&1)"; \
  $(PYTHON) -m venv $(VENV) || { rm -rf $(VENV); \
    echo "'$(PYTHON) -m venv' failed; on Debian install python3-venv" \
         "(scripts/install-system-deps.sh does)" >&2; exit 1; }; \
fi
endef

# pip runs again only when pyproject.toml is newer than the stamp. The [test]
# extra includes [lab], so a test environment is a demo environment too.
$(STAMP): pyproject.toml
	@$(ENSURE_VENV)
	$(PY) -m pip install --quiet --progress-bar off -e '.[test]'
	@touch $@ $(LAB_STAMP)

# What `make demo` needs (JupyterLab, the demo API, pandas, matplotlib): a
# quicker first install than the whole [test] extra.
$(LAB_STAMP): pyproject.toml
	@$(ENSURE_VENV)
	$(PY) -m pip install --quiet --progress-bar off -e '.[lab]'
	@touch $@

# Extra kernel environments (ipykernel 6.29.x and 7.4.x) for the browser tests.
kernels: venv
	@if [ -f scripts/kernels.sh ]; then bash scripts/kernels.sh; \
	 else echo "kernels: scripts/kernels.sh not present, skipping"; fi

# The OpenID provider of make demo-oauth and the tests (oidc-provider on Node): npm ci
# from the committed package-lock.json, again only when the lock file changed.
IDP_DIR   := demo/idp
IDP_STAMP := $(IDP_DIR)/node_modules/.installed-from-lock
idp: $(IDP_STAMP)

$(IDP_STAMP): $(IDP_DIR)/package-lock.json
	@command -v npm >/dev/null || { echo "idp: npm missing; run make system-deps" >&2; exit 1; }
	npm ci --prefix $(IDP_DIR) --no-audit --no-fund --loglevel=error
	@touch $@

# Fails early, with a short message, when Playwright cannot drive Chromium.
define BROWSER_CHECK
import os, time
from playwright.sync_api import sync_playwright
start = time.monotonic()
with sync_playwright() as p:
    browser = p.chromium.launch(
        executable_path=os.environ["CHROMIUM"],
        args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
              "--disable-background-networking", "--disable-component-update",
              "--disable-sync", "--no-first-run"],
    )
    page = browser.new_page()
    page.set_content("<p id=probe>ok</p>")
    assert page.inner_text("#probe") == "ok"
    version = browser.version
    browser.close()
print(f"browser-check: Playwright drives Chromium {version} ({time.monotonic() - start:.1f} s)")
endef
export BROWSER_CHECK

browser-check: venv
	@test -x $(CHROMIUM) || { echo "browser-check: $(CHROMIUM) missing; run make system-deps" >&2; exit 1; }
	@CHROMIUM=$(CHROMIUM) $(PY) -c "$$BROWSER_CHECK"

# --- checks -------------------------------------------------------------------

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

# The whole suite, inside a private D-Bus session with a real gnome-keyring.
# pytest's exit code is make's; 5 (no tests collected) fails like any other.
# A run longer than TEST_TIME_LIMIT gets Ctrl+C (SIGINT), so pytest still
# reports where it was stuck instead of being killed silently by a CI limit.
TEST_TIME_LIMIT ?= 75m
test: system-deps venv kernels idp browser-check lint
	@mkdir -p $(ARTIFACTS)
	@SESSION_MAGICS_ARTIFACTS="$(abspath $(ARTIFACTS))" \
	  scripts/with-secret-service.sh \
	  timeout --foreground --signal=INT --kill-after=2m $(TEST_TIME_LIMIT) \
	  $(PY) -m pytest --junitxml="$(ARTIFACTS)/junit.xml" $(PYTEST_ARGS) \
	  || { rc=$$?; \
	       [ $$rc -ne 5 ] || echo "make test: pytest collected no tests" >&2; \
	       [ $$rc -ne 124 ] || echo "make test: stopped after $(TEST_TIME_LIMIT)" >&2; \
	       exit $$rc; }

test-fast: venv
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

# The security tests (tests/security) against a real Secret Service; their figures
# are written into the table of docs/SECURITY.md. The exit code is pytest's.
.PHONY: security-report
security-report: venv
	@scripts/with-secret-service.sh $(PY) scripts/security_report.py $(if $(PYTEST_ARGS),-- $(PYTEST_ARGS))

# --- demo ---------------------------------------------------------------------

# The demo API on 127.0.0.1:$(DEMO_PORT) and JupyterLab on notebooks/quickstart.ipynb
# (scripts/demo.sh: with a throwaway gnome-keyring where there is no OS keyring).
# DEMO_ARGS go to `jupyter lab`, e.g. make demo DEMO_ARGS="--no-browser --port 8899".
DEMO_ARGS ?=
demo: demo-system-deps $(LAB_STAMP)
	@scripts/demo.sh $(PY) $(DEMO_PORT) $(DEMO_ARGS)

# The OAuth demo: the OpenID provider of demo/idp on 127.0.0.1:$(DEMO_IDP_PORT), an API
# that accepts its tokens on 127.0.0.1:$(DEMO_OAUTH_API_PORT), and JupyterLab on
# notebooks/oauth.ipynb (scripts/demo-oauth.sh; the keyring and Ctrl+C as make demo).
# OAUTH_FLOW=code or client: the notebook's login flow (device by default).
demo-oauth: demo-oauth-system-deps $(LAB_STAMP) idp
	@scripts/demo-oauth.sh $(PY) $(DEMO_IDP_PORT) $(DEMO_OAUTH_API_PORT) $(DEMO_ARGS)

# --- benchmarks ---------------------------------------------------------------

# restmagic (the comparison in the table) does not build with setuptools >= 70,
# so it is installed without build isolation, next to an older setuptools.
BENCH_ARGS ?=
bench-deps: venv
	$(PY) -m pip install --quiet --progress-bar off "setuptools<70" wheel
	$(PY) -m pip install --quiet --progress-bar off --no-build-isolation -r benchmarks/requirements.txt

bench: bench-deps idp
	$(PY) benchmarks/run.py $(if $(filter --quick,$(BENCH_ARGS)),,--write docs/performance.md) $(BENCH_ARGS)
	$(PY) benchmarks/oauth_logins.py $(filter --quick,$(BENCH_ARGS))

# --- cleaning -----------------------------------------------------------------

clean:
	rm -rf $(ARTIFACTS) .pytest_cache .mypy_cache .ruff_cache build dist
	find . -path ./.venv -prune -o -path './.venv-*' -prune -o \
	  -name __pycache__ -type d -prune -exec rm -rf {} +

# Also removes the virtualenvs (the next make test builds them again).
distclean: clean
	rm -rf $(VENV) .venv-* .cache $(IDP_DIR)/node_modules tests/idp/node_modules

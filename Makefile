# Two commands on a fresh Debian/Ubuntu machine: `make demo` and `make test`. Both bootstrap themselves
# (system packages with apt when missing, the project into .venv) and are idempotent.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.DEFAULT_GOAL := help
.PHONY: help bootstrap system-deps browser-deps monitoring-deps demo test chaos lint typecheck pytest bench bench-bus bench-books bench-detector bench-e2e demo-session tail clean

help:  ## list the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

system-deps:  ## apt-get install redis-server if it is missing
	@missing=""; command -v redis-server >/dev/null || missing="redis-server"; \
	if [ -n "$$missing" ]; then \
	  echo "installing $$missing with apt-get"; \
	  $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; \
	fi

browser-deps:  ## apt-get install Debian's chromium (the browser tests drive it) if it is missing
	@[ -x /usr/bin/chromium ] || { echo "installing chromium with apt-get"; \
	  $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq --no-install-recommends chromium; }

# Debian ships promtool only inside the prometheus package; where systemd runs, installing it also starts a
# Prometheus on :9090 (`sudo systemctl disable --now prometheus` stops it; promtool does not need it).
monitoring-deps:  ## apt-get install Debian's prometheus for promtool (alert rules, /metrics) if missing
	@[ -x /usr/bin/promtool ] || { echo "installing prometheus (for promtool) with apt-get"; \
	  $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq --no-install-recommends prometheus; }

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
	  { echo "triarb needs Python 3.11+; $(PYTHON) is $$($(PYTHON) --version)"; exit 1; }
	@$(PYTHON) -m venv $(VENV) 2>/dev/null || { \
	  echo "python3-venv is missing; installing it with apt-get"; \
	  $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq python3-venv && $(PYTHON) -m venv $(VENV); }

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	@touch $(STAMP)

bootstrap: system-deps $(STAMP)  ## system packages + .venv with the project installed

demo: bootstrap  ## run the whole stack on the built-in demo feed (Ctrl-C stops everything)
	$(BIN)/triarb up --demo

tail: bootstrap  ## follow md.snapshot of a running stack (STREAM=md.trade to pick another)
	$(BIN)/triarb tail $(or $(STREAM),md.snapshot) --last 5

lint: bootstrap  ## ruff
	$(BIN)/ruff check .

typecheck: bootstrap  ## mypy --strict on the contracts and shared runtime
	$(BIN)/mypy

pytest: bootstrap browser-deps monitoring-deps
	$(BIN)/pytest -q -m "not slow"

test: lint typecheck pytest  ## the whole suite: lint, types, unit, integration and the fast fault tests

chaos: bootstrap  ## every fault (Redis kill/SHUTDOWN/3 s/30 s outages, worker kills, stalls) and its table, then 10k-example fuzzing
	$(BIN)/pytest -q -m chaos tests/chaos
	TRIARB_FUZZ_EXAMPLES=10000 $(BIN)/pytest -q --timeout=900 tests/unit/test_fuzz.py \
	  tests/integration/test_dashboard_schemathesis.py

bench-bus: bootstrap  ## bus publish/drain throughput as ratios to redis-benchmark and a plain loop
	$(BIN)/python scripts/bench_bus.py

# The peer (cryptofeed 2.4.1) gets its own virtualenv, .venv-peer, made by the script on first use and reused;
# it never enters the project's dependencies. Without it the bench says why in one line and reports the rest.
bench-books: bootstrap  ## book updates/s per venue on the shared recordings vs a dict+sorted book and cryptofeed 2.4.1
	$(BIN)/python scripts/bench_books.py

bench-detector: bootstrap  ## detector cost per book update (mean, worst market) vs a full rescan
	$(BIN)/python scripts/bench_detector.py

bench-e2e: bootstrap  ## snapshot rate → one detector process: latency, lag, planted found; drain vs a plain loop
	$(BIN)/python scripts/bench_e2e.py

bench: bench-bus bench-books bench-detector bench-e2e  ## every benchmark

demo-session: bootstrap  ## regenerate the bundled demo session (deterministic) in producers/simulators/data/demo
	$(BIN)/python scripts/gen_demo_session.py --out-dir producers/simulators/data/demo

clean:  ## remove .venv, caches and runtime data under var/
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache .hypothesis

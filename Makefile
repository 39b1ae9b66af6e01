# Two entry points: `make run` (the 5-minute demo) and `make test`. Both create .venv first.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip install -q --disable-pip-version-check
# `make run` needs the runtime only; `make test` / `make lint` the [dev] extra (test + lint tools).
RUN_STAMP := $(VENV)/.installed-run
STAMP     := $(VENV)/.installed

.PHONY: run test lint bench sysdeps clean

$(VENV)/bin/python:
	@$(PYTHON) -m venv $(VENV)

$(RUN_STAMP): pyproject.toml | $(VENV)/bin/python
	@$(PIP) -e . >/dev/null
	@touch $(RUN_STAMP)

$(STAMP): pyproject.toml | $(VENV)/bin/python
	$(PIP) -e '.[dev]'
	touch $(STAMP) $(RUN_STAMP)

run: $(RUN_STAMP)
	@$(PY) -m luatos_testing.demo

test: $(STAMP)
	$(PY) -m pytest -n 2 -q

lint: $(STAMP)
	$(VENV)/bin/ruff check host tools tests bench

bench: $(STAMP)
	for b in bench/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

# System packages the full test suite uses (headless Chromium for the dashboard test,
# PostgreSQL for the multi-instance store, Mosquitto for the MQTT tests; nginx with its stream module, openssl and
# systemd-analyze for the deploy/ files). Needs root; CI runs it.
sysdeps:
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium postgresql nginx libnginx-mod-stream openssl systemd mosquitto >/dev/null

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info

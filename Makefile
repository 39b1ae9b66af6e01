# Two entry points: `make run` (the 5-minute demo) and `make test`. Both create .venv first.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: run test lint bench sysdeps clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(PY) -m luatos_testing.demo

test: $(STAMP)
	$(PY) -m pytest -n 2 -q

lint: $(STAMP)
	$(VENV)/bin/ruff check host tools tests bench

bench: $(STAMP)
	for b in bench/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

# System packages the full test suite uses (headless Chromium for the dashboard test,
# PostgreSQL for the multi-instance store; nginx with its stream module, openssl and
# systemd-analyze for the deploy/ files). Needs root; CI runs it.
sysdeps:
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium postgresql nginx libnginx-mod-stream openssl systemd >/dev/null

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info

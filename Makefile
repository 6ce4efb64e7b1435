# The two set-up commands of the README.
#   make run   installs the dashboard's dependencies and starts it on the embedded demo database
#   make test  installs the test dependencies (Debian's chromium included) and runs the whole suite
PYTHON ?= python3
PIP ?= $(PYTHON) -m pip
DB ?= data/crm.duckdb

.PHONY: run test install install-test chromium demo lint bench

install:
	$(PIP) install -q -r requirements.txt

run: install
	@if [ -z "$$CRM_DATABASE_URL" ] && [ ! -f $(DB) ]; then $(PYTHON) -m crm_data demo; fi
	$(PYTHON) -m streamlit run dashboard.py --server.address 127.0.0.1

chromium:
	@command -v chromium >/dev/null 2>&1 || { \
		if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
		$$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq chromium fonts-dejavu-core; }

install-test: chromium
	$(PIP) install -q -r requirements-dev.txt

lint:
	$(PYTHON) -m ruff check .

test: install-test lint
	$(PYTHON) -m pytest -q

demo: install
	$(PYTHON) -m crm_data demo

bench: install
	$(PYTHON) -m benchmarks

# The two set-up commands of the README.
#   make run   installs the dashboard's dependencies and starts it on the embedded demo database
#   make test  installs the test dependencies (Debian's chromium included) and runs the whole suite
# Both work in a virtual environment of the project's own, `.venv`, made on first use with the
# system's Python (Debian's own included: PEP 668 forbids installing into it directly).
PYTHON ?= python3
VENV ?= .venv
VPY := $(VENV)/bin/python
DB ?= data/crm.duckdb
# apt-get through sudo unless we are root
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: run test venv install install-test chromium demo lint bench

# The venv is made once; a Debian without python3-venv gets it from apt first.
$(VPY):
	@$(PYTHON) -m venv $(VENV) 2>/dev/null || { rm -rf $(VENV); \
		$(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq python3-venv && $(PYTHON) -m venv $(VENV); }
	$(VPY) -m pip install -q --upgrade pip

venv: $(VPY)

install: $(VPY)
	$(VPY) -m pip install -q -r requirements.txt -e .

run: install
	@if [ -z "$$CRM_DATABASE_URL" ] && [ ! -f $(DB) ]; then $(VPY) -m crm_data demo; fi
	$(VPY) -m crm_data serve --address 127.0.0.1

chromium:
	@{ command -v chromium && command -v soffice && command -v pdftotext; } >/dev/null 2>&1 || { \
		$(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq chromium fonts-dejavu-core libreoffice-impress poppler-utils; }

install-test: chromium $(VPY)
	$(VPY) -m pip install -q -r requirements-dev.txt -e .

lint:
	$(VPY) -m ruff check .

test: install-test lint
	$(VPY) -m pytest -q -n auto --dist loadgroup --no-loadscope-reorder --durations=40

demo: install
	$(VPY) -m crm_data demo

bench: install
	$(VPY) -m benchmarks

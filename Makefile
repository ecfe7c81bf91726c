# mdecost: `make demo` runs the pipeline on the simulated estate, `make test` runs the suite.
# Both set up .venv on first use with nothing but Python >= 3.11 and the package index.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

AZURITE := .azurite/node_modules/.bin/azurite-blob

.PHONY: demo test lint bench install clean browser azurite

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "mdecost needs Python >= 3.11")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/mdecost demo

test: $(STAMP) browser azurite
	$(BIN)/python -m pytest

# The archive-storage test reads Activity Log blobs from Azurite (Microsoft's storage emulator,
# from the npm registry), started on loopback by the test itself. Without npm that test skips
# and says why.
azurite: $(AZURITE)

$(AZURITE):
	@command -v npm >/dev/null 2>&1 && npm install --prefix .azurite --no-audit --no-fund --silent azurite@3 \
		|| echo "npm not found: the archive-storage test will be skipped"

# The report test renders report.html in headless Chromium (Debian's package). Installed when
# missing and we may (root with apt-get); otherwise that one test skips and says why.
browser:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 \
		&& (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
		|| echo "chromium not installed: the report rendering test will be skipped"; }

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy flows pricing transforms

bench: $(STAMP)
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) .azurite data/lake data/warehouse.duckdb data/reports data/simulator

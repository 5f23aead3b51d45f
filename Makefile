# Everything a newcomer needs, from a fresh clone: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

CHROMIUM ?= /usr/bin/chromium

.PHONY: install browser demo test lint format bench clean

# The lab extension (extension/) is built by `pip install` (hatch-jupyter-builder runs `jlpm
# install` and its build); its sources are prerequisites, so an edit rebuilds it into the venv.
LAB_SOURCES := extension/package.json extension/yarn.lock extension/tsconfig.json \
	$(wildcard extension/src/*.ts extension/style/* extension/schema/*.json)

$(STAMP): pyproject.toml $(LAB_SOURCES)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

## browser: Debian's Chromium, which the dashboard tests drive headless (installed if missing)
browser:
	@test -x $(CHROMIUM) || { \
		echo "installing Debian's chromium for the dashboard's browser tests"; \
		if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium; }

## demo: run the quickstart notebook twice; the second run restores its steps from the cache
demo: $(STAMP)
	@$(BIN)/python notebooks/demo.py

## test: lint, then the whole test suite
test: $(STAMP) browser
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest -n auto --dist loadfile

lint: $(STAMP)
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff check --fix . && $(BIN)/ruff format .

## bench: every benchmark script; each prints its ratios against the peer tool
bench: $(STAMP)
	@failed=0; for script in benchmarks/bench_*.py; do \
		echo "== $$script"; $(BIN)/python $$script || failed=1; \
	done; exit $$failed

clean:
	rm -rf $(VENV) .cellops reports/runs reports/*.ipynb reports/*.html

# The two commands in the README do all set-up: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
CONFIG ?= conf/extrusion.toml

# Debian packages: libmilter-dev builds pymilter; the rest are real peers for the tests.
DEBS_RUN  := libmilter-dev
DEBS_TEST := $(DEBS_RUN) postfix miltertest chromium m4

.PHONY: run test lint demo clean debs-run debs-test

$(VENV)/.created:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	touch $@

$(VENV)/.run: pyproject.toml $(VENV)/.created | debs-run
	$(BIN)/pip install -q -e '.[postgres]'
	touch $@

$(VENV)/.test: pyproject.toml $(VENV)/.created | debs-test
	$(BIN)/pip install -q -e '.[postgres,test,report]'
	touch $@ $(VENV)/.run

# Hostile traffic at real daemons, then: alive, no tracebacks (minutes; not in `make test`
# or CI). The full size: make soak SOAK_ARGS="--requests 1000000 --log-lines
# 1000000 --milter-sessions 100000".
.PHONY: soak
SOAK_ARGS ?=
soak: $(VENV)/.test
	$(BIN)/python scripts/soak.py $(SOAK_ARGS)

debs-run:
	@scripts/ensure-debs $(DEBS_RUN)

debs-test:
	@scripts/ensure-debs $(DEBS_TEST)

run: $(VENV)/.run
	mkdir -p var
	$(BIN)/extrusion serve --config $(CONFIG)

test: $(VENV)/.test lint
	$(BIN)/pytest tests

lint: $(VENV)/.test
	$(BIN)/ruff check extrusion tests benchmarks
	$(BIN)/mypy

# A throw-away Postfix, the remote side, extrusion with SQLite and a bot outbreak (needs root).
demo: $(VENV)/.test
	$(BIN)/python scripts/demo.py

clean:
	rm -rf $(VENV) var build *.egg-info

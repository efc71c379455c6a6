# The two commands in the README do all set-up: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
CONFIG ?= conf/extrusion.toml
# The milter socket for `make run`: the shipped one lives in Postfix's queue directory
# (group postfix), which a checkout run by any user cannot count on; this copy of
# $(CONFIG) serves it under var/ instead. A config with a socket of its own keeps it.
# (Defined before the rules: make expands a rule's prerequisites as it reads them.)
CHECKOUT_CONFIG ?= var/checkout.toml

# Debian packages: libmilter-dev builds pymilter; the rest are real peers for the tests.
DEBS_RUN  := libmilter-dev
DEBS_TEST := $(DEBS_RUN) postfix miltertest chromium m4 pmacct nftables

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

debs-run:
	@scripts/ensure-debs $(DEBS_RUN)

debs-test:
	@scripts/ensure-debs $(DEBS_TEST)

run: $(VENV)/.run $(CHECKOUT_CONFIG)
	mkdir -p var
	$(BIN)/extrusion serve --config $(CHECKOUT_CONFIG)

$(CHECKOUT_CONFIG): $(CONFIG) scripts/checkout-config
	mkdir -p $(dir $@)
	$(PYTHON) scripts/checkout-config $(CONFIG) $@ $(CURDIR)

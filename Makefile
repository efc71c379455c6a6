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
DEBS_TEST := $(DEBS_RUN) postfix miltertest chromium m4 pmacct nftables nfdump

.PHONY: run test lint demo clean debs-run debs-test install install-venv install-files

# `make install` (as root): the command in its own venv under /opt/extrusion with a link
# in $(PREFIX)/bin, the config in /etc/extrusion (an existing one is never overwritten),
# the systemd units (ExecStart pointing at that link), the tmpfiles snippet and the docs.
# DESTDIR stages it all under another root (a package build, the tests).
PREFIX      ?= /usr/local
BINDIR      ?= $(PREFIX)/bin
DOCDIR      ?= $(PREFIX)/share/doc/extrusion
VENVDIR     ?= /opt/extrusion
SYSCONFDIR  ?= /etc/extrusion
UNITDIR     ?= /etc/systemd/system
TMPFILESDIR ?= /usr/lib/tmpfiles.d
EXTRAS      ?= postgres,report
# The units as shipped name these paths; install rewrites them to where things went.
UNIT_PATHS  := -e 's|/usr/local/bin/extrusion|$(BINDIR)/extrusion|g' \
               -e 's|/usr/local/share/doc/extrusion|$(DOCDIR)|g' \
               -e 's|/etc/extrusion/|$(SYSCONFDIR)/|g'

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

# Hostile traffic at real daemons, then: alive, no tracebacks; then serve killed -9 ten
# times under load, nothing lost or doubled (minutes; not in `make test` or CI). The full
# size: make soak SOAK_ARGS="--requests 1000000 --log-lines 1000000 --milter-sessions 100000".
.PHONY: soak
SOAK_ARGS ?=
soak: $(VENV)/.test
	$(BIN)/python scripts/soak.py $(SOAK_ARGS)

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

# The suite runs twice: on the checkout as it is (pure Python, the editable .venv), then
# in a copy whose modules of mypyc-modules.txt are compiled, as `pip install .` ships them.
COMPILED_TREE ?= build/compiled

test: $(VENV)/.test lint
	$(BIN)/pytest tests
	$(MAKE) --no-print-directory test-compiled

.PHONY: test-compiled
test-compiled: $(VENV)/.test
	$(BIN)/python scripts/compiled-tree $(COMPILED_TREE)
	cd $(COMPILED_TREE) && EXTRUSION_COMPILED=1 PYTHONPATH=$(abspath $(COMPILED_TREE)) \
	  $(abspath $(BIN))/pytest tests

lint: $(VENV)/.test
	$(BIN)/ruff check extrusion tests benchmarks
	$(BIN)/mypy

# A throw-away Postfix, the remote side, extrusion with SQLite and a bot outbreak (needs root).
demo: $(VENV)/.test
	$(BIN)/python scripts/demo.py

clean:
	rm -rf $(VENV) var build *.egg-info

install: install-venv install-files

# The venv is built where it will run from; under a DESTDIR its scripts would name the
# staging path in their #! line and VIRTUAL_ENV, and its bytecode in tracebacks, so those
# are rewritten to $(VENVDIR).
install-venv: debs-run
	$(PYTHON) -m venv $(DESTDIR)$(VENVDIR)
	$(DESTDIR)$(VENVDIR)/bin/pip install -q --upgrade pip
	$(DESTDIR)$(VENVDIR)/bin/pip install -q '.[$(EXTRAS)]'
	@if [ -n "$(DESTDIR)" ]; then \
	  grep -rlI -- '$(DESTDIR)$(VENVDIR)' $(DESTDIR)$(VENVDIR)/bin $(DESTDIR)$(VENVDIR)/pyvenv.cfg \
	    | xargs -r sed -i 's|$(DESTDIR)$(VENVDIR)|$(VENVDIR)|g'; \
	  $(DESTDIR)$(VENVDIR)/bin/python -m compileall -q -f -s $(DESTDIR) -p / \
	    $(DESTDIR)$(VENVDIR)/lib >/dev/null; \
	fi
	install -d $(DESTDIR)$(BINDIR)
	ln -sfn $(VENVDIR)/bin/extrusion $(DESTDIR)$(BINDIR)/extrusion

install-files:
	install -d -m 0755 $(DESTDIR)$(SYSCONFDIR) $(DESTDIR)$(UNITDIR) $(DESTDIR)$(TMPFILESDIR) \
	  $(DESTDIR)$(DOCDIR)/examples
	@if [ -e $(DESTDIR)$(SYSCONFDIR)/extrusion.toml ]; then \
	  install -m 0644 $(CONFIG) $(DESTDIR)$(SYSCONFDIR)/extrusion.toml.dist; \
	  echo "kept $(SYSCONFDIR)/extrusion.toml; the shipped one is $(SYSCONFDIR)/extrusion.toml.dist"; \
	else \
	  install -m 0644 $(CONFIG) $(DESTDIR)$(SYSCONFDIR)/extrusion.toml; \
	fi
	for unit in conf/systemd/*.service; do \
	  sed $(UNIT_PATHS) $$unit > $(DESTDIR)$(UNITDIR)/$$(basename $$unit) && \
	  chmod 0644 $(DESTDIR)$(UNITDIR)/$$(basename $$unit) || exit 1; \
	done
	install -m 0644 conf/systemd/extrusion.tmpfiles.conf $(DESTDIR)$(TMPFILESDIR)/extrusion.conf
	install -m 0644 README.md $(DESTDIR)$(DOCDIR)/README.md
	install -m 0644 conf/logrotate/README $(DESTDIR)$(DOCDIR)/logrotate.README
	install -m 0644 conf/postfix/main.cf.snippet conf/postfix/master.cf.snippet \
	  conf/sendmail/extrusion.mc $(DESTDIR)$(DOCDIR)/examples/

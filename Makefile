# A fresh machine needs only Python 3.11+: every target creates .venv when it is missing.
# The first of these that runs and is 3.11+ (a pyenv shim may exist for a version not enabled).
PYTHON ?= $(shell for p in python3 python3.13 python3.12 python3.11; do \
  $$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null && { command -v $$p; break; }; \
  done)
VENV := .venv
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test lint format bench chaos browser pgbouncer balancer fuzz hypothesis graphiql-assets

$(VENV)/bin/python:
	@test -n "$(PYTHON)" || { echo "Python 3.11+ is required (set PYTHON=...)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip

$(VENV)/.installed-run: pyproject.toml | $(VENV)/bin/python
	$(VENV)/bin/python -m pip install --quiet -e .
	touch $@

# The pipeline client (clients/pipeline) is a distribution of its own; the tests use it.
CLIENT := clients/pipeline

$(VENV)/.installed-test: pyproject.toml $(CLIENT)/pyproject.toml | $(VENV)/bin/python
	$(VENV)/bin/python -m pip install --quiet -e '.[test]' -e './$(CLIENT)[prefect]'
	touch $@ $(VENV)/.installed-run

run: $(VENV)/.installed-run
	$(VENV)/bin/storyline serve --host $(HOST) --port $(PORT) --print-token

lint: $(VENV)/.installed-test
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

test: lint browser pgbouncer balancer
	$(VENV)/bin/pytest

# The editor page's tests drive Debian's Chromium; on CI (root, apt) it is installed when missing.
browser:
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
	  && (apt-get update -qq && apt-get install -y -qq chromium >/dev/null) \
	  || echo "chromium not found: the browser tests will be skipped"; }

# The PgBouncer tests start Debian's pgbouncer on a port of their own; on CI (root, apt) it
# is installed when missing, and the system service the package starts is stopped.
pgbouncer:
	@command -v pgbouncer >/dev/null || test -x /usr/sbin/pgbouncer || { [ "$$(id -u)" = 0 ] \
	  && command -v apt-get >/dev/null && (apt-get update -qq && apt-get install -y -qq pgbouncer \
	  >/dev/null && { systemctl disable --now pgbouncer || service pgbouncer stop || true; } \
	  >/dev/null 2>&1) || echo "pgbouncer not found: the PgBouncer tests will be skipped"; }

# The load-balancer test runs Debian's HAProxy (active health checks on /readyz, which nginx
# has only in its commercial edition); on CI (root, apt) it is installed when missing, and
# the packaged service is kept from running: the test starts its own, on a free port.
balancer:
	@command -v haproxy >/dev/null || test -x /usr/sbin/haproxy || { [ "$$(id -u)" = 0 ] \
	  && command -v apt-get >/dev/null \
	  && (apt-get update -qq && apt-get install -y -qq haproxy >/dev/null) \
	  && { systemctl disable --now haproxy >/dev/null 2>&1 || service haproxy stop >/dev/null 2>&1; \
	       update-rc.d haproxy disable >/dev/null 2>&1; true; } \
	  || echo "haproxy not found: the load-balancer test will be skipped"; }

# GraphiQL's vendored files (src/storyline/web/static/graphiql/): re-downloaded from the npm
# registry at the manifest's versions, each tarball checked against the registry's integrity.
# CHECK=1 compares them with the committed files instead of writing.
graphiql-assets: $(VENV)/.installed-run
	$(VENV)/bin/python tools/graphiql_assets.py $(if $(CHECK),--check)

$(VENV)/.installed-bench: pyproject.toml $(CLIENT)/pyproject.toml | $(VENV)/bin/python
	$(VENV)/bin/python -m pip install --quiet -e '.[test,bench]' -e './$(CLIENT)[prefect]'
	touch $@ $(VENV)/.installed-test $(VENV)/.installed-run

bench: $(VENV)/.installed-bench
	$(VENV)/bin/python -m bench

# Longer property-based runs than CI's bounded ones.
fuzz: $(VENV)/.installed-test
	STORYLINE_FUZZ_EXAMPLES=$${STORYLINE_FUZZ_EXAMPLES:-1000} $(VENV)/bin/pytest tests/test_fuzz.py -q

hypothesis: $(VENV)/.installed-test
	STORYLINE_HYPOTHESIS_EXAMPLES=$${STORYLINE_HYPOTHESIS_EXAMPLES:-1000} \
	  $(VENV)/bin/pytest tests/test_money_machine.py -q

format: $(VENV)/.installed-test
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

# The chaos run (chaos/): ten minutes of load and faults on three instances, then the
# checks; rewrites docs/reliability.md. tests/test_chaos.py runs a one-minute one.
chaos: $(VENV)/.installed-bench balancer
	$(VENV)/bin/python -m chaos

# Two commands for newcomers: `make demo` and `make test`. Both set everything up first.
VENV := .venv
PY := $(VENV)/bin/python
UV := .tools/bin/uv
UV_VERSION := 0.13.9
export UV_PYTHON_DOWNLOADS := never

.PHONY: setup demo test lint bench mutation oscar-local clean test-matrix wheel compose-config ui \
	browser stack stack-deps

$(UV):
	python3 -m venv .tools
	.tools/bin/pip install --quiet --disable-pip-version-check "uv==$(UV_VERSION)"

$(VENV)/.synced: uv.lock pyproject.toml | $(UV)
	$(UV) sync --frozen --all-extras --group stack --python python3
	touch $@

setup: $(VENV)/.synced

demo: setup
	$(PY) scripts/demo.py

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

test: lint browser stack-deps
	$(VENV)/bin/pytest

# Debian's chromium for the browser tests (tests/ui); never Playwright's own browser download.
# Without it (not root, no apt) those tests skip, or fail in CI (CI=true).
CHROMIUM := /usr/bin/chromium
browser:
	@if [ ! -x $(CHROMIUM) ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing chromium for the browser tests ..."; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	      chromium chromium-driver >/dev/null) || echo "warning: could not install chromium"; \
	  else echo "note: $(CHROMIUM) is missing; install chromium to run the browser tests"; fi; \
	fi

# Debian's PostgreSQL and Redis for the production stack (make stack, tests/stack, the stack
# benchmark). Without them (not root, no apt) the stack tests skip, or fail in CI (CI=true).
stack-deps:
	@if ! command -v redis-server >/dev/null || ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing postgresql and redis-server for the stack ..."; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	      postgresql redis-server >/dev/null) || echo "warning: could not install postgresql, redis-server"; \
	  else echo "note: install postgresql and redis-server to run the production stack"; fi; \
	fi

# The production topology on this machine (CeleryExecutor, Postgres, Redis, two workers,
# triggerer, two embedded OSCARs), kept in .stack/, until Ctrl-C. STACK_ARGS="--port 8081".
stack: setup stack-deps
	$(PY) -m stack $(STACK_ARGS)

# Airflow standalone with the embedded OSCAR and the example DAGs, until Ctrl-C.
ui: setup
	$(PY) scripts/ui.py $(UI_ARGS)

bench: setup stack-deps
	$(UV) sync --frozen --all-extras --group stack --group bench --python python3
	$(PY) -m benchmarks.run

# Mutation testing (mutmut) of the core modules, with a score per module; slow, not in `make test`.
# `make mutation MODULE=ensemble` runs one module (several: MODULE="fdl results").
mutation: setup
	$(UV) sync --frozen --all-extras --group mutation --python python3
	$(PY) -m benchmarks.mutation $(MODULE) $(MUTATION_ARGS)

oscar-local: setup
	$(VENV)/bin/oscar-local --port 8000

# The suite against Airflow 3.1, 3.2 and 3.3 in venvs under .matrix/ (slow, not in CI).
test-matrix: setup
	$(PY) scripts/test_matrix.py

wheel: setup
	$(UV) build --wheel --out-dir dist

# Validates docker-compose.yaml; needs a compose client, not a Docker engine.
compose-config:
	@if docker compose version >/dev/null 2>&1; then docker compose config -q; \
	elif command -v docker-compose >/dev/null; then docker-compose config -q; \
	else echo "no compose client: install docker compose (or docker-compose)"; exit 1; fi
	@echo "docker-compose.yaml is valid"

clean:
	rm -rf $(VENV) .tools .pytest_cache .mypy_cache .ruff_cache .matrix .stack .mutation

# Two commands for newcomers: `make demo` and `make test`. Both set everything up first.
VENV := .venv
PY := $(VENV)/bin/python
UV := .tools/bin/uv
UV_VERSION := 0.13.9
export UV_PYTHON_DOWNLOADS := never

.PHONY: setup demo test lint bench oscar-local clean test-matrix wheel compose-config

$(UV):
	python3 -m venv .tools
	.tools/bin/pip install --quiet --disable-pip-version-check "uv==$(UV_VERSION)"

$(VENV)/.synced: uv.lock pyproject.toml | $(UV)
	$(UV) sync --frozen --all-extras --python python3
	touch $@

setup: $(VENV)/.synced

demo: setup
	$(PY) scripts/demo.py

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

test: lint
	$(VENV)/bin/pytest

bench: setup
	$(PY) -m benchmarks.run

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
	rm -rf $(VENV) .tools .pytest_cache .mypy_cache .ruff_cache .matrix

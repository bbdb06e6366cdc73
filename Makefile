# Two commands for newcomers: `make demo` and `make test`. Both set everything up first.
VENV := .venv
PY := $(VENV)/bin/python
UV := .tools/bin/uv
UV_VERSION := 0.13.9
export UV_PYTHON_DOWNLOADS := never

.PHONY: setup demo test lint bench oscar-local clean

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

clean:
	rm -rf $(VENV) .tools .pytest_cache .mypy_cache .ruff_cache

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test bench demo up clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# uv installs the resolved set in seconds; pip alone works too but takes minutes.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q --upgrade pip uv
	$(BIN)/uv pip install --python $(BIN)/python -q -e ".[test]"
	touch $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python bench/run.py $(BENCH_ARGS)

demo: $(STAMP)
	$(BIN)/inspect-otel demo $(DEMO_ARGS)

up: $(STAMP)
	$(BIN)/inspect-otel up

clean:
	rm -rf $(VENV) .pytest_cache

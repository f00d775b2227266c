PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Arize Phoenix, for the interop tests only, in its own venv: it pulls in openai, anthropic,
# google-genai and a newer graphql-core than MLflow's; none of that belongs in the package's env.
PHOENIX_VERSION ?= 20.26.1
PHOENIX_VENV := .venv-phoenix
PHOENIX_STAMP := $(PHOENIX_VENV)/.installed-$(PHOENIX_VERSION)

.PHONY: test bench demo up clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# uv installs the resolved set in seconds; pip alone works too but takes minutes.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q --upgrade pip uv
	$(BIN)/uv pip install --python $(BIN)/python -q -e ".[test]"
	touch $(STAMP)

$(PHOENIX_STAMP): | $(STAMP)
	$(PYTHON) -m venv $(PHOENIX_VENV)
	$(BIN)/uv pip install --python $(PHOENIX_VENV)/bin/python -q "arize-phoenix==$(PHOENIX_VERSION)"
	touch $(PHOENIX_STAMP)

# Bytecode caches on, whatever the caller's environment says (PYTHONDONTWRITEBYTECODE=1 would make
# every receiver, MLflow and CLI subprocess of the suite compile Inspect and MLflow from source).
test: $(STAMP) $(PHOENIX_STAMP)
	env -u PYTHONDONTWRITEBYTECODE $(BIN)/python -m pytest $(PYTEST_ARGS)

bench: $(STAMP)
	env -u PYTHONDONTWRITEBYTECODE $(BIN)/python bench/run.py $(BENCH_ARGS)

demo: $(STAMP)
	$(BIN)/inspect-otel demo $(DEMO_ARGS)

up: $(STAMP)
	$(BIN)/inspect-otel up

clean:
	rm -rf $(VENV) $(PHOENIX_VENV) .pytest_cache

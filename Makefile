PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Arize Phoenix, for the interop tests only, in its own venv: it pulls in openai, anthropic,
# google-genai and a newer graphql-core than MLflow's; none of that belongs in the package's env.
PHOENIX_VERSION ?= 20.26.1
PHOENIX_VENV := .venv-phoenix
PHOENIX_STAMP := $(PHOENIX_VENV)/.installed-$(PHOENIX_VERSION)
# The bottom of pyproject.toml's ranges: `uv pip install --resolution lowest-direct` (every direct
# dependency at its declared minimum, the rest at the newest that fits), in two venvs, because the
# scout extra's OTLP/JSON encoder pins the OpenTelemetry SDK to 1.45.1: `.venv-lowest` holds the
# package with every other extra, so OpenTelemetry, MLflow, protobuf, starlette... at their own
# minimums; `.venv-lowest-scout` the whole test extra, for what needs Scout. TEST_FLOOR_GROUPS
# names the requirement groups each holds at their minimums (tests/test_dependency_floors.py).
LOWEST_VENV := .venv-lowest
LOWEST_EXTRAS := mlflow,compare,postgres,testing
LOWEST_FLOORS := base,$(LOWEST_EXTRAS)
LOWEST_SCOUT_VENV := .venv-lowest-scout
LOWEST_SCOUT_EXTRAS := test
LOWEST_SCOUT_FLOORS := scout
# The subsets run there (the newest run has the whole suite): the hook with the SDK's exporters,
# their request sizes and error messages (at start and at run end), replay, Inspect's real providers, the receiver against a real
# MLflow (sqlite, and PostgreSQL for psycopg), compare; then Scout. Not the timing, fault, scale
# and hostile-input tests, the embedded stack or interop (README, Supported versions).
# Timing and end-to-end repeats that the newest run covers and no version changes: the slow evals
# of the early warnings, the request-size checks through the receiver and MLflow (their unit
# halves stay), delivery on PostgreSQL (test_hook_e2e keeps psycopg at its floor).
LOWEST_SKIPPED := \
	--deselect "tests/hook/test_early_warnings.py::test_a_wrong_endpoint_is_said_long_before_the_eval_ends" \
	--deselect "tests/hook/test_request_size.py::test_live_over_grpc_every_span_lands_in_the_receiver_and_in_mlflow" \
	--deselect "tests/hook/test_request_size.py::test_replayed_over_http_every_span_lands_in_the_receiver_and_in_mlflow" \
	--deselect "tests/receiver/test_delivery.py::test_shuffled_duplicated_delivery_lands_once[postgresql]"
SCOUT_IN_HOOK_TEST := tests/hook/test_provider_e2e.py::test_receiver_keeps_the_raw_call_on_mlflow_spans_and_scout_imports_it
LOWEST_TESTS := tests/test_dependency_floors.py \
	tests/hook/test_units.py tests/hook/test_mapping_cases.py tests/hook/test_mapping_stream.py \
	tests/hook/test_exporters.py tests/hook/test_request_size.py \
	tests/hook/test_early_warnings.py tests/hook/test_export_paths.py \
	tests/hook/test_export_causes.py tests/hook/test_json_attributes.py \
	tests/hook/test_replay.py tests/hook/test_live_export.py tests/hook/test_trio.py \
	tests/hook/test_provider_units.py tests/hook/test_provider_e2e.py \
	tests/receiver/test_hook_e2e.py tests/receiver/test_delivery.py tests/receiver/test_mapping.py \
	tests/receiver/test_bad_input.py tests/receiver/test_log_artifacts.py \
	tests/receiver/test_live_mlflow.py \
	tests/compare \
	--deselect $(SCOUT_IN_HOOK_TEST) $(LOWEST_SKIPPED)
LOWEST_SCOUT_TESTS := tests/test_dependency_floors.py tests/scout $(SCOUT_IN_HOOK_TEST)

.PHONY: test test-newest test-lowest test-lowest-core test-lowest-scout bench demo up clean

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

# $(call lowest_venv,VENV,EXTRAS): VENV made anew (an old one would keep what it had) with the
# package and EXTRAS at the lowest versions pyproject.toml allows.
define lowest_venv
	rm -rf $(1)
	$(BIN)/uv venv -q --python $(PYTHON) $(1)
	$(BIN)/uv pip install --python $(1)/bin/python -q --resolution lowest-direct -e ".[$(2)]"
	touch $(1)/.installed
endef

$(LOWEST_VENV)/.installed: pyproject.toml | $(STAMP)
	$(call lowest_venv,$(LOWEST_VENV),$(LOWEST_EXTRAS))

$(LOWEST_SCOUT_VENV)/.installed: pyproject.toml | $(STAMP)
	$(call lowest_venv,$(LOWEST_SCOUT_VENV),$(LOWEST_SCOUT_EXTRAS))

# Bytecode caches on, whatever the caller's environment says (PYTHONDONTWRITEBYTECODE=1 would make
# every receiver, MLflow and CLI subprocess of the suite compile Inspect and MLflow from source).
# The newest versions the index serves (the whole suite; PYTEST_ARGS narrows it), then the
# lowest. `make -k test` (.ci/run) runs the lowest even when the newest failed.
test: test-newest test-lowest

test-newest: $(STAMP) $(PHOENIX_STAMP)
	env -u PYTHONDONTWRITEBYTECODE $(BIN)/python -m pytest $(PYTEST_ARGS)

# The two floors at once, each in its own venv and process (no timing test is among them): the
# CI's wall time is the longer of the two, not their sum. Output grouped per run.
test-lowest: $(LOWEST_VENV)/.installed $(LOWEST_SCOUT_VENV)/.installed
	$(MAKE) -k -j2 --output-sync=target test-lowest-core test-lowest-scout

test-lowest-core: $(LOWEST_VENV)/.installed
	env -u PYTHONDONTWRITEBYTECODE TEST_FLOOR_GROUPS=$(LOWEST_FLOORS) \
		$(LOWEST_VENV)/bin/python -m pytest $(LOWEST_TESTS)

test-lowest-scout: $(LOWEST_SCOUT_VENV)/.installed
	env -u PYTHONDONTWRITEBYTECODE TEST_FLOOR_GROUPS=$(LOWEST_SCOUT_FLOORS) \
		$(LOWEST_SCOUT_VENV)/bin/python -m pytest $(LOWEST_SCOUT_TESTS)

bench: $(STAMP)
	env -u PYTHONDONTWRITEBYTECODE $(BIN)/python bench/run.py $(BENCH_ARGS)

demo: $(STAMP)
	$(BIN)/inspect-otel demo $(DEMO_ARGS)

up: $(STAMP)
	$(BIN)/inspect-otel up

clean:
	rm -rf $(VENV) $(PHOENIX_VENV) $(LOWEST_VENV) $(LOWEST_SCOUT_VENV) .pytest_cache

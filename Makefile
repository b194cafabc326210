# The two commands of the README. Each creates the virtual environment it needs.
# Installs come from requirements.lock (every package pinned; `make lock` writes it from the
# ranges of pyproject.toml) through uv, itself pinned here: the lock makes the application's
# installs reproducible, uv makes them fast (~15 s for the whole stack, where pip takes 4-5 min).
# --compile-bytecode writes every .pyc at install: where PYTHONDONTWRITEBYTECODE is set (as on our CI
# machines) each process would compile them again; a worker or CLI process then imports in ~5 s, not ~8.
# Our own package is installed editable, so uv compiles none of it: compileall does (~0.1 s per process,
# on the start-up's critical path; a .pyc that a later edit made stale is ignored, never used).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
UV_VERSION := 0.13.8
LOCK := requirements.lock
# The lowest supported versions: every lower bound of pyproject.toml, pinned (CI's second step).
LOWEST_LOCK := requirements-lowest.lock
LOWEST_VENV ?= .venv-lowest
# What runs on them: the tests that exercise scikit-learn, pandas, pyarrow, dask, distributed,
# MLflow and skops (not the files of the local cluster, nor the fresh-environment model tests),
# and scikit-learn's own search tests against our classes, which build on its BaseSearchCV.
LOWEST_TESTS ?= tests/kampai tests/gridsearch/test_correctness.py tests/gridsearch/test_engine.py \
	tests/gridsearch/test_runlog.py tests/gridsearch/test_query.py tests/gridsearch/test_workers.py \
	tests/gridsearch/test_promote.py tests/gridsearch/test_promote_runs.py tests/gridsearch/test_estimators.py tests/gridsearch/test_halving.py tests/sklearn_suite \
	tests/gridsearch/test_halving_run.py tests/gridsearch/test_curve.py tests/gridsearch/test_promote_class_log.py
UV_FLAGS ?=

.PHONY: install run test test-lowest lock clean

run: $(VENV)/.installed  ## set up, run the default search on synthetic data, then write its report
	$(BIN)/python -m gridsearch run conf/search.yaml
	$(BIN)/python -m gridsearch report runs --to runs/report.html

test: $(VENV)/.installed  ## set up, then lint and run the test suite
	$(BIN)/ruff check kampai gridsearch tests
	$(BIN)/python -m pytest

install: $(VENV)/.installed  ## set up only (the Dockerfile builds its image with this very target)

$(VENV)/.installed: pyproject.toml $(LOCK)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet "uv==$(UV_VERSION)"
	$(BIN)/uv pip install --quiet --compile-bytecode --python $(BIN)/python -r $(LOCK) -e ".[test]"
	$(BIN)/python -m compileall -q gridsearch kampai
	touch $@

test-lowest: $(LOWEST_VENV)/.installed  ## the tests of LOWEST_TESTS on the lowest supported versions
	$(LOWEST_VENV)/bin/python -m pytest $(LOWEST_TESTS)

$(LOWEST_VENV)/.installed: pyproject.toml $(LOWEST_LOCK) $(VENV)/.installed
	$(PYTHON) -m venv $(LOWEST_VENV)
	$(BIN)/uv pip install --quiet --compile-bytecode --python $(LOWEST_VENV)/bin/python -r $(LOWEST_LOCK) -e ".[test]"
	touch $@

# Rewrite both locks from pyproject.toml, keeping the pins that still fit (UV_FLAGS=--upgrade: the latest).
lock: $(VENV)/.installed
	$(BIN)/uv pip compile --quiet $(UV_FLAGS) --universal --python-version 3.11 --extra test \
		--custom-compile-command "make lock" -o $(LOCK) pyproject.toml
	$(BIN)/python -c 'import re, tomllib; print(*(re.sub(r"\s*>=\s*([^,;]+).*", r"==\1", d) for d in \
		tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]), sep="\n")' > $(VENV)/lower-bounds.txt
	$(BIN)/uv pip compile --quiet --python-version 3.11 --python-platform x86_64-manylinux_2_28 --resolution lowest-direct \
		-c $(VENV)/lower-bounds.txt --extra test --custom-compile-command "make lock" -o $(LOWEST_LOCK) pyproject.toml

clean:
	rm -rf $(VENV) $(LOWEST_VENV) runs

# The two commands of the README. Each creates the virtual environment it needs.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install run test clean

run: $(VENV)/.installed  ## set up, then run the default search on synthetic data
	$(BIN)/python -m gridsearch run conf/search.yaml

test: $(VENV)/.installed  ## set up, then lint and run the test suite
	$(BIN)/ruff check kampai gridsearch tests
	$(BIN)/python -m pytest

install: $(VENV)/.installed  ## set up only (the Dockerfile builds its image with this very target)

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $@

clean:
	rm -rf $(VENV) runs

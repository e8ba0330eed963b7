# The two commands of the README. Both set everything up on a fresh machine.
#   make demo   install, build the demo dataset, run the demo queries on 2 MPI ranks
#   make test   install, lint (ruff, mypy), run the whole suite (local engine, then mpiexec -n 1..4)
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
NP     ?= 2

.PHONY: install demo test lint clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[mpich,demo,test]"
	touch $@

install: $(VENV)/.installed

demo: install
	$(PY) -m hpcframe.demo prepare demo-data
	$(VENV)/bin/mpiexec -n $(NP) $(PY) -m hpcframe.demo run demo-data

# ruff (lint, import order, docstrings on public API) and mypy, configured in pyproject.toml
lint: install
	$(VENV)/bin/ruff check hpcframe tests benchmarks
	$(VENV)/bin/ruff format --check hpcframe tests benchmarks
	$(VENV)/bin/mypy

# lint first: a lint failure fails the suite (and so CI)
test: install lint
	$(PY) tests/run_suite.py

clean:
	rm -rf $(VENV) demo-data .pytest_cache

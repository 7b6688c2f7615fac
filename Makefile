# Two commands do all set-up on a fresh machine:
#   make demo   sweep the demo study on the embedded `shapes` data and write its report
#   make test   run the test suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: demo test clean

$(BIN)/classaudit: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,ray,slurm]'
	touch $@

demo: $(BIN)/classaudit
	$(BIN)/classaudit sweep studies/demo.toml --results results/demo
	$(BIN)/classaudit report results/demo --out reports/demo

test: $(BIN)/classaudit
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) results

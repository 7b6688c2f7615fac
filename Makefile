# Two commands do all set-up on a fresh machine:
#   make demo   sweep the demo study on the embedded `shapes` data and write its report
#   make test   run the test suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: demo test cifar10 reports clean

# The package alone: all that the demo (and every study on this machine) needs.
$(BIN)/classaudit: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e .
	touch $@

# What the test suite adds: pytest, and Ray and submitit, whose executors it tests.
$(VENV)/.test-extras: $(BIN)/classaudit
	$(BIN)/pip install --quiet -e '.[test,ray,slurm]'
	touch $@

demo: $(BIN)/classaudit
	$(BIN)/classaudit sweep studies/demo.toml --results results/demo
	$(BIN)/classaudit report results/demo --out reports/demo

test: $(VENV)/.test-extras
	$(BIN)/python -m pytest

# The CIFAR-10 study behind reports/cifar10 (85 runs, hours on a CPU; stop and re-run at will, it resumes).
# Its data: the CIFAR-10 JPEG copy extracted into ~/.cache/classaudit/cifar10-jpeg (see studies/cifar10_cpu.toml).
# The sweep works in results/ (not tracked), starting from the runs committed beside the report, so a fresh clone
# resumes the study where it stands; the finished runs are then copied back beside the report.
cifar10: $(BIN)/classaudit
	test -d results/cifar10_cpu || ! test -d reports/cifar10/results || \
		(mkdir -p results && cp -R reports/cifar10/results results/cifar10_cpu)
	$(BIN)/classaudit sweep studies/cifar10_cpu.toml --results results/cifar10_cpu
	mkdir -p reports/cifar10/results
	cp -R results/cifar10_cpu/runs results/cifar10_cpu/study.json reports/cifar10/results/
	$(MAKE) reports

# Rebuild every committed report from the results committed beside it, byte for byte.
reports: $(BIN)/classaudit
	$(BIN)/classaudit report reports/cifar10/results --out reports/cifar10

clean:
	rm -rf $(VENV) results

# Two commands do all set-up: `make audit` (the main job) and `make test` (the test suite).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.vitaudit-installed

.PHONY: audit test bench fixtures clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	# The pair this machine has on disk; pyproject's own ranges stay loose for users elsewhere.
	$(BIN)/python -m pip install torch==2.14.1 torchvision==0.29.1
	$(BIN)/python -m pip install -e '.[test]'
	touch $(STAMP)

audit: $(STAMP)
	$(BIN)/pytest audits/

test: $(STAMP)
	$(BIN)/pytest tests/

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_explain.py

fixtures: $(STAMP)
	$(BIN)/python fixtures/train.py

clean:
	rm -rf $(VENV) reports/audit.html reports/audit.json

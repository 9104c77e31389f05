# Two commands on a fresh machine (root, Python 3, registry access):
#   make deploy   install + configure a hub from parameters/local.yaml (PARAMS=... to choose another file)
#   make test     the whole test suite
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
PARAMS ?= parameters/local.yaml
STAMP := $(VENV)/.installed

.PHONY: deploy test unit bench clean-venv

$(STAMP): pyproject.toml tools/bootstrap.sh
	sh tools/bootstrap.sh $(PY) $(VENV)
	$(BIN)/uv pip install --python $(BIN)/python -q -e '.[test]'
	touch $(STAMP)

deploy: $(STAMP)
	$(BIN)/python -m hubrunbook.deploy $(PARAMS)

test: $(STAMP)
	$(BIN)/python -m pytest -ra tests/unit tests/integration

unit: $(STAMP)
	$(BIN)/python -m pytest -ra tests/unit

bench: $(STAMP)
	$(BIN)/python bench/bench_install.py
	$(BIN)/python bench/bench_configure.py
	$(BIN)/python bench/bench_troubleshoot.py

clean-venv:
	rm -rf $(VENV)

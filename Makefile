# Two commands on a fresh Debian/Ubuntu server (root; python3, git, make; PyPI, npm and Debian mirrors reachable):
#   make deploy   install + configure a hub from parameters/local.yaml (PARAMS=... to choose another file)
#   make test     the whole test suite
#   make lab      JupyterLab on the runbooks (loopback, token), as root
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
PARAMS ?= parameters/local.yaml
STAMP := $(VENV)/.installed

.PHONY: deploy test test-browser test-pristine test-system unit bench runbooks check-runbooks references clean-venv status start stop restart logs rotate-secrets lab

$(STAMP): pyproject.toml tools/bootstrap.sh
	sh tools/bootstrap.sh $(PY) $(VENV)
	$(BIN)/uv pip install --python $(BIN)/python -q -e '.[test]'
	touch $(STAMP)

deploy: $(STAMP)
	$(BIN)/python -m hubrunbook.deploy $(PARAMS)

# the running hub, the same way under systemd and without it (python -m hubrunbook.hubctl)
status start stop restart logs rotate-secrets: $(STAMP)
	$(BIN)/python -m hubrunbook.hubctl $@ $(PARAMS)

test: $(STAMP)
	$(BIN)/python -m pytest -ra tests/unit tests/integration

# JupyterLab for operators, as root, on http://127.0.0.1:$(LAB_PORT) with a random token, on runbooks/ (hubrunbook.lab)
LAB_PORT ?= 8888
lab: $(STAMP)
	$(BIN)/python -m hubrunbook.lab --port $(LAB_PORT)

# the runbooks run in JupyterLab by Debian's chromium (apt-get install chromium), driven by Playwright
test-browser: $(STAMP)
	$(BIN)/python -m pytest -ra tests/browser

# `make test` inside a booted pristine Debian 12 server (a fresh clone of this checkout): nothing on this
# machine can hide a missing install step there. Needs root, debootstrap and systemd-container.
test-pristine: $(STAMP)
	$(BIN)/python tests/system/pristine.py run bookworm -- make test

# the system scenarios on booted pristine Debian 12 and 13 servers (deploy, crash, reboot, broken config)
test-system: $(STAMP)
	$(BIN)/python -m pytest -ra -s tests/system

unit: $(STAMP)
	$(BIN)/python -m pytest -ra tests/unit

bench: $(STAMP)
	$(BIN)/python bench/bench_install.py
	$(BIN)/python bench/bench_configure.py
	$(BIN)/python bench/bench_troubleshoot.py
	$(BIN)/python bench/bench_load.py
	$(BIN)/python bench/bench_userenv.py
	$(BIN)/python bench/bench_kubernetes.py

# runbooks/<name>.ipynb <-> runbooks/<name>.md (jupytext), the parameters cells, cell ids, no outputs;
# also parameters/local.yaml and docs/troubleshoot-catalog.md
runbooks: $(STAMP)
	$(BIN)/python -m hubrunbook.sources

# the committed form (CI, on a clean clone): pairs in step, the model's defaults, no outputs, generated files current
check-runbooks: $(STAMP)
	$(BIN)/python -m hubrunbook.sources --check

# nbval references (tests/references/) and docs/runs/*.html: a converged run of each runbook on its test sandbox
# (root; ~3 min). NAMES="install configure" for some of them.
references: $(STAMP)
	$(BIN)/python tools/record_references.py $(NAMES)

clean-venv:
	rm -rf $(VENV)

# The two commands of the README: `make dev` (set up and run the local platform) and
# `make test` (set up and run the tests). Setup is incremental: it redoes a step only when the file
# that describes it changed.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
TASKS_EMULATOR := $(VENV)/tasks-emulator-0.6.2
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: setup dev test lint clean

setup: $(VENV)/.installed $(TASKS_EMULATOR)/.installed node_modules/.installed frontend/dist/.built

# The web UI (frontend/): its own npm project, built into frontend/dist, which the gateway serves.
FRONTEND_SOURCES := frontend/index.html frontend/vite.config.ts frontend/tsconfig.json $(shell find frontend/src -type f 2>/dev/null)

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade "pip>=24"
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

# The Cloud Tasks emulator (the webhooks' queue locally) in its own virtual environment: it pins
# protobuf<5, which the Google clients of the main one are past (runtune/dev/emulators.py).
$(TASKS_EMULATOR)/.installed: $(VENV)/.installed
	$(PYTHON) -m venv $(TASKS_EMULATOR)
	$(TASKS_EMULATOR)/bin/python -m pip install -q "gcloud-tasks-emulator==0.6.2"
	touch $@

node_modules/.installed: package.json
	npm install --no-audit --no-fund --loglevel=error
	touch $@

frontend/node_modules/.installed: frontend/package.json frontend/package-lock.json
	cd frontend && npm ci --no-audit --no-fund --loglevel=error
	touch $@

frontend/dist/.built: frontend/node_modules/.installed $(FRONTEND_SOURCES)
	cd frontend && npm run build
	touch $@

# The browser tests (tests/browser) drive Debian's Chromium; a fresh machine gets it from Debian's
# packages (as root, or through sudo), once.
CHROMIUM := /usr/bin/chromium
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

$(CHROMIUM):
	$(SUDO) apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends chromium >/dev/null

dev: setup
	$(VENV)/bin/runtune dev up

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

test: setup $(CHROMIUM)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/pytest -q

clean:
	rm -rf $(VENV) node_modules frontend/node_modules frontend/dist

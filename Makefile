# The two commands of the README: `make dev` (set up and run the local platform) and
# `make test` (set up and run the tests). Setup is incremental: it redoes a step only when the file
# that describes it changed.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
TASKS_EMULATOR := $(VENV)/tasks-emulator-0.6.2
# llama.cpp for GGUF exports, from one llama-cpp-python source distribution (runtune.settings.LLAMA_CPP_PYTHON,
# jobs/convert/Dockerfile): its runtime compiled for the CPU, its converter extracted from the same archive.
LLAMA_CPP_PYTHON := 0.3.36
LLAMA_CPP := $(VENV)/llama-cpp-$(LLAMA_CPP_PYTHON)
LLAMA_CPP_SDIST := $(LLAMA_CPP)/llama_cpp_python-$(LLAMA_CPP_PYTHON).tar.gz
LLAMA_CPP_CMAKE := -DLLAVA_BUILD=OFF -DGGML_NATIVE=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_SERVER=OFF
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: setup dev test lint clean openapi

SETUP := $(VENV)/.installed $(TASKS_EMULATOR)/.installed $(LLAMA_CPP)/.installed node_modules/.installed frontend/dist/.built

# The steps run side by side (-j3): compiling llama.cpp (about 4 minutes of two cores) overlaps the
# Python and npm installs instead of adding to them.
setup:
	@$(MAKE) --no-print-directory -j3 $(SETUP)

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

# Compiled into a wheel kept beside the venv (a rebuilt venv reinstalls it without compiling again).
$(LLAMA_CPP)/.built:
	mkdir -p $(LLAMA_CPP)/wheels $(LLAMA_CPP)/converter
	$(PYTHON) -m venv $(LLAMA_CPP)/build
	$(LLAMA_CPP)/build/bin/python -m pip download -q --no-deps --no-binary :all: "llama-cpp-python==$(LLAMA_CPP_PYTHON)" -d $(LLAMA_CPP)
	tar -xzf $(LLAMA_CPP_SDIST) -C $(LLAMA_CPP)/converter --strip-components=3 \
		llama_cpp_python-$(LLAMA_CPP_PYTHON)/vendor/llama.cpp/convert_hf_to_gguf.py \
		llama_cpp_python-$(LLAMA_CPP_PYTHON)/vendor/llama.cpp/conversion \
		llama_cpp_python-$(LLAMA_CPP_PYTHON)/vendor/llama.cpp/gguf-py
	CMAKE_ARGS="$(LLAMA_CPP_CMAKE)" CMAKE_BUILD_PARALLEL_LEVEL=2 $(LLAMA_CPP)/build/bin/python -m pip wheel -q --no-deps $(LLAMA_CPP_SDIST) -w $(LLAMA_CPP)/wheels
	touch $@

$(LLAMA_CPP)/.installed: $(LLAMA_CPP)/.built $(VENV)/.installed
	$(PY) -m pip install -q $(LLAMA_CPP)/wheels/llama_cpp_python-$(LLAMA_CPP_PYTHON)-*.whl
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

# The web UI's API types from the services' own OpenAPI: the public document (scripts/openapi.py, the
# paths the gateway forwards) into frontend/openapi.json, then TypeScript from it into
# frontend/src/client/schema.ts (openapi-typescript, pinned in frontend/package.json). Run it after
# changing a route or a schema; tests/infra/test_openapi.py fails while either file is stale.
openapi: $(VENV)/.installed frontend/node_modules/.installed
	$(PY) -m scripts.openapi frontend/openapi.json
	cd frontend && npm run --silent generate-client

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

# The two commands of the README: `make run` and `make test`. Both install what
# they need into .venv first, once: the install is redone only when pyproject.toml
# changes (the package is installed in editable mode, so code edits need none).
# torch==2.13.0 goes in before anything else: the local CPU wheel; an unpinned
# torch would pull gigabytes of CUDA packages.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SAMPLE ?= ../shared/speechocean762/audio/000530003.flac

.PHONY: install run test lint

$(BIN)/activate:
	$(PY) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/activate
	@echo "installing into $(VENV) (once; again only when pyproject.toml changes)"
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[test,lint,server,mqtt,bench,pipecat]"
	@touch $@

install: $(STAMP)

run: install
	$(BIN)/multipa assess $(SAMPLE)
	$(BIN)/multipa-server --host 127.0.0.1 --port 8765

test: install
	$(BIN)/python -m pytest -q

# Lint and types (.ci/run runs this before the tests): ruff on the whole repo, mypy
# strict on the server and the client SDK, normal on multipa_core. The installed
# package names (multipa_server is server/, multipa_client is client_sdk/) come from
# setuptools' package-dir, which mypy cannot follow through an editable install, so
# mypy reads them through a tree of links named as they are imported.
TYPES := $(VENV)/mypy-path
lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	@mkdir -p $(TYPES) && ln -sfn $(CURDIR)/multipa_core $(TYPES)/multipa_core && ln -sfn $(CURDIR)/server $(TYPES)/multipa_server && ln -sfn $(CURDIR)/client_sdk $(TYPES)/multipa_client
	cd $(TYPES) && $(CURDIR)/$(BIN)/mypy --config-file $(CURDIR)/pyproject.toml -p multipa_core -p multipa_server -p multipa_client

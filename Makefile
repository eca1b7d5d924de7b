# The two commands of the README: `make run` and `make test`. Both install what
# they need into .venv first (torch==2.13.0 before anything else: the local CPU
# wheel; an unpinned torch would pull gigabytes of CUDA packages).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
SAMPLE ?= ../shared/speechocean762/audio/000530003.flac

.PHONY: install run test

$(BIN)/activate:
	$(PY) -m venv $(VENV)

install: $(BIN)/activate
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[test,server,mqtt,bench,pipecat]"

run: install
	$(BIN)/multipa assess $(SAMPLE)
	$(BIN)/multipa-server --host 127.0.0.1 --port 8765

test: install
	$(BIN)/python -m pytest -q

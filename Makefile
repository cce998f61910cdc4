# `make run` and `make test` do all the set-up: a virtual environment in .venv, then the task.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run dev test test-system bench clean

install: $(STAMP)

$(STAMP): setup.py pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip uv
	$(BIN)/uv pip install --python $(BIN)/python --compile-bytecode -e '.[test]'
	touch $@

dev: install
	$(BIN)/pintrest dev

run: install
	$(BIN)/pintrest run

# The Debian packages the tests need (chromium, mariadb-server, postgresql, nodejs): installed by `test`
# when it runs as root with apt-get, else named with the command that installs them.
test: install
	@bash scripts/provision-test-system.sh
	$(BIN)/python -m pytest

test-system:
	@bash scripts/provision-test-system.sh --require

bench: install
	$(BIN)/python benchmarks/emulation_throughput.py
	$(BIN)/python benchmarks/lake_refresh.py
	$(BIN)/python benchmarks/reconciliation.py
	$(BIN)/python benchmarks/streaming.py
	$(BIN)/python benchmarks/dev_stream_latency.py

clean:
	rm -rf .pintrest

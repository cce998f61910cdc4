# `make run` and `make test` do all the set-up: a virtual environment in .venv, then the task.
# The environment is the one uv.lock pins (`make lock` regenerates it after a change to
# pyproject.toml's dependencies): `install` installs what the pipeline runs on, and `dg`; the
# tests and benchmarks add the `test` extra.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
UV := $(BIN)/uv
# --locked: stop if uv.lock no longer matches pyproject.toml; --inexact: keep what another target
# installed (the test extra), so `make run` after `make test` removes nothing.
SYNC := $(UV) sync --locked --inexact --compile-bytecode

.PHONY: install install-test jvm-archive lock run dev test test-system bench clean

install: $(VENV)/.installed

install-test: $(VENV)/.installed-test

$(UV):
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet 'uv>=0.13'

$(VENV)/.installed: pyproject.toml setup.py uv.lock | $(UV)
	$(SYNC)
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(SYNC) --extra test
	touch $@

lock: | $(UV)
	$(UV) lock

# The local Spark JVM's class archive (pintrest_assets/lake/jvm_archive.py): built once per
# machine, into ~/.cache/pintrest; at once when it is there.
jvm-archive: install
	$(BIN)/python -m pintrest_assets.lake.jvm_archive

dev: install jvm-archive
	$(BIN)/pintrest dev

run: install jvm-archive
	$(BIN)/pintrest run

# The Debian packages the tests need (chromium, mariadb-server, postgresql, nodejs): installed by `test`
# when it runs as root with apt-get, else named with the command that installs them.
test: install-test jvm-archive
	@bash scripts/provision-test-system.sh
	$(BIN)/python -m pytest

test-system:
	@bash scripts/provision-test-system.sh --require

bench: install-test
	$(BIN)/python benchmarks/emulation_throughput.py
	$(BIN)/python benchmarks/lake_refresh.py
	$(BIN)/python benchmarks/lake_vs_duckdb.py
	$(BIN)/python benchmarks/transform.py
	$(BIN)/python benchmarks/reconciliation.py
	$(BIN)/python benchmarks/streaming.py
	$(BIN)/python benchmarks/stream_backlog.py
	$(BIN)/python benchmarks/stream_keep_up.py
	$(BIN)/python benchmarks/dev_stream_latency.py
	$(BIN)/python benchmarks/dev_batch_latency.py

clean:
	rm -rf .pintrest

# Every target bootstraps what it needs from a fresh clone: `make demo` and `make test` are the two
# commands a newcomer runs. Tools whose pins clash with the app's (bqemulator, checkov) get their own venvs.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export DO_NOT_TRACK := 1

.PHONY: demo demo-cloud test lint fmt venv bench clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/gridsight demo

# The same demo on Google's emulators: Pub/Sub (gcloud), BigQuery (bqemulator), Cloud Storage
# (gcp-storage-emulator, a dev dependency); infra/local/emulated.py.
demo-cloud: $(STAMP) bqemu
	$(BIN)/gridsight demo --emulated-cloud --devices 5 --days 14

test: $(STAMP) test-deps
	$(BIN)/ruff check .
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

fmt: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: $(STAMP)
	@for b in bench/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) .venv-* .gridsight fivetran_connector/files

# Extra environments the test suite needs; each area adds its own prerequisite here.
.PHONY: test-deps
test-deps: browser checkov tf-schema bqemu

# Debian's Chromium for the Playwright browser tests; `playwright install` is never used (it downloads a
# browser build of its own). CI runs as root on a fresh Debian machine.
.PHONY: browser
browser:
	@test -x /usr/bin/chromium || (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium)

# checkov (tests/infra) pins clash with the app's, so it gets its own venv from a pinned, fully resolved list.
CHECKOV_STAMP := .venv-checkov/.installed
$(CHECKOV_STAMP): infra/terraform/requirements-checkov.txt
	$(PYTHON) -m venv .venv-checkov
	.venv-checkov/bin/pip install --quiet --upgrade pip
	.venv-checkov/bin/pip install --quiet -r infra/terraform/requirements-checkov.txt
	touch $(CHECKOV_STAMP)

.PHONY: checkov
checkov: $(CHECKOV_STAMP)

# bqemulator (BigQuery differential tests, tests/emulator.py) pins sqlglot<30.12, which clashes with the
# app's, so it gets its own venv, started as a subprocess by the tests. Offline, DuckDB cannot download
# the spatial extension bqemulator loads at start: tests/bqemu_spatial.py installs it from the
# duckdb-extension-spatial wheel (same DuckDB version); it runs on every `make bqemu`, as it is idempotent.
BQEMU_STAMP := .venv-bqemu/.installed
$(BQEMU_STAMP): tests/requirements-bqemu.txt tests/constraints-bqemu.txt
	$(PYTHON) -m venv .venv-bqemu
	.venv-bqemu/bin/pip install --quiet --upgrade pip
	.venv-bqemu/bin/pip install --quiet -r tests/requirements-bqemu.txt -c tests/constraints-bqemu.txt
	touch $(BQEMU_STAMP)

.PHONY: bqemu
bqemu: $(BQEMU_STAMP)
	.venv-bqemu/bin/python tests/bqemu_spatial.py

# The google provider's schema as generated CDKTF bindings (npm, pinned to the provider version in
# infra/terraform): tests/infra checks every Terraform argument against it, since providers cannot be
# downloaded here for `terraform validate`.
TF_SCHEMA := .venv-checkov/provider-google/package/lib/provider/index.d.ts
$(TF_SCHEMA): | $(CHECKOV_STAMP)
	mkdir -p .venv-checkov/provider-google
	cd .venv-checkov/provider-google && npm pack --silent @cdktf/provider-google@16.3.0 >/dev/null && tar -xzmf cdktf-provider-google-16.3.0.tgz && rm cdktf-provider-google-16.3.0.tgz

.PHONY: tf-schema
tf-schema: $(TF_SCHEMA)

# latent: the pipeline as a DAG of files.
#
#   make pretrain        the whole pipeline on the embedded CIFAR-10 subset -> runs/default/
#   make smoke           the same DAG on a tiny slice, under a minute        -> runs/smoke/
#   make test            format check, build, then every test (what CI runs)
#   make lint            rustfmt and clippy -D warnings on every target
#   make bench           ours against the Python peers, one line per comparison
#   make run PIPELINE=x  any config in pipelines/x.toml                      -> runs/x/
#
# Each stage depends on the slice of the config it reads (runs/<name>/config/<stage>.toml),
# rewritten only when that section changes, so a second `make pretrain` redoes only the
# stages whose inputs or settings changed.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DELETE_ON_ERROR:

PIPELINE ?= default
RUNS ?= runs
CARGO ?= cargo
CONFIG := pipelines/$(PIPELINE).toml
RUN := $(RUNS)/$(PIPELINE)
# BIN and SKIP_BUILD=1 run already-built binaries from elsewhere (e.g. a copy kept while the
# tree is being edited).
BIN ?= target/release
SKIP_BUILD ?=
CFG := $(RUN)/config

# The autoencoder baseline has its own config (its views are the plain images), read when
# pipelines/<name>.autoencoder.toml exists; its model and latent table join the report.
AE_CONFIG := pipelines/$(PIPELINE).autoencoder.toml
AE_CFG := $(RUN)/config-autoencoder
ifneq ($(wildcard $(AE_CONFIG)),)
AE_LATENT := $(RUN)/latent_autoencoder.parquet
AE_REPORT_ARGS := --latent autoencoder=$(AE_LATENT) --decoder autoencoder=$(RUN)/autoencoder
endif

.PHONY: pretrain smoke run build test lint bench fmt clean-runs FORCE

pretrain:
	@$(MAKE) --no-print-directory run PIPELINE=default

smoke:
	@$(MAKE) --no-print-directory run PIPELINE=smoke

run: build $(RUN)/report/report.json
	@echo "report: $(RUN)/report/report.md"

build:
ifeq ($(SKIP_BUILD),)
	$(CARGO) build --release --workspace --bins
endif

# The slices are re-checked on every run; the binary rewrites a slice only when its content
# changes, and Make compares the slices' modification times with the outputs'.
$(CFG)/pipeline.toml $(CFG)/ingest.toml $(CFG)/augment.toml $(CFG)/train.toml $(CFG)/export.toml $(CFG)/analyze.toml &: $(CONFIG) FORCE | build
	$(BIN)/latent-pipeline slice $(CONFIG) --out-dir $(CFG)

$(AE_CFG)/pipeline.toml $(AE_CFG)/augment.toml $(AE_CFG)/train.toml $(AE_CFG)/export.toml &: $(AE_CONFIG) FORCE | build
	$(BIN)/latent-pipeline slice $(AE_CONFIG) --out-dir $(AE_CFG)

$(RUN)/images.parquet: $(CFG)/ingest.toml
	$(BIN)/latent-ingest --config $(CONFIG) --out $@

$(RUN)/simclr/model.safetensors: $(RUN)/images.parquet $(CFG)/augment.toml $(CFG)/train.toml
	$(BIN)/latent-augment $(RUN)/images.parquet --config $(CONFIG) --out - \
	  | $(BIN)/latent-train - --config $(CONFIG) --out $(RUN)/simclr

$(RUN)/autoencoder/model.safetensors: $(RUN)/images.parquet $(AE_CFG)/augment.toml $(AE_CFG)/train.toml
	$(BIN)/latent-augment $(RUN)/images.parquet --config $(AE_CONFIG) --out - \
	  | $(BIN)/latent-train - --config $(AE_CONFIG) --out $(RUN)/autoencoder

$(RUN)/latent_autoencoder.parquet: $(RUN)/autoencoder/model.safetensors $(AE_CFG)/export.toml
	$(BIN)/latent-export $(RUN)/images.parquet --model $(RUN)/autoencoder --config $(AE_CONFIG) --out $@

$(RUN)/latent_simclr.parquet: $(RUN)/simclr/model.safetensors $(CFG)/export.toml
	$(BIN)/latent-export $(RUN)/images.parquet --model $(RUN)/simclr --config $(CONFIG) --out $@

# The projection head's first layer, SimCLR v2's suggestion of a better representation
# than the encoder output, exported beside it for the report to compare.
$(RUN)/latent_simclr_head1.parquet: $(RUN)/simclr/model.safetensors $(CFG)/export.toml
	$(BIN)/latent-export $(RUN)/images.parquet --model $(RUN)/simclr --config $(CONFIG) --representation head:1 --out $@

$(RUN)/latent_random.parquet: $(RUN)/images.parquet $(CFG)/train.toml $(CFG)/augment.toml $(CFG)/export.toml
	$(BIN)/latent-export $(RUN)/images.parquet --random-init --config $(CONFIG) --out $@

$(RUN)/report/report.json: $(RUN)/images.parquet $(RUN)/latent_simclr.parquet $(RUN)/latent_simclr_head1.parquet $(RUN)/latent_random.parquet $(AE_LATENT) $(CFG)/analyze.toml
	$(BIN)/latent-analyze --images $(RUN)/images.parquet \
	  --latent simclr=$(RUN)/latent_simclr.parquet \
	  --latent simclr-head1=$(RUN)/latent_simclr_head1.parquet \
	  --latent random-init=$(RUN)/latent_random.parquet $(AE_REPORT_ARGS) \
	  --steps $(RUN)/simclr/steps.parquet \
	  --config $(CONFIG) --out $(RUN)/report

# The tests read latent tables from Python too (tests/python_readers.rs), with the same
# polars and pyarrow versions as the peers; the venv is made once.
TEST_VENV ?= .venv-test

test: $(TEST_VENV)/.ready
	$(CARGO) fmt --all -- --check
	$(CARGO) build --release --workspace --bins
	$(CARGO) test --release --workspace

$(TEST_VENV)/.ready: tests/python/requirements.txt
	python3 -m venv $(TEST_VENV)
	$(TEST_VENV)/bin/python -m pip install --quiet -r tests/python/requirements.txt
	touch $@

# Clippy with warnings as errors, on every target (a few minutes: it checks the dependencies
# in its own mode).
lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --release --workspace --all-targets -- -D warnings

bench: build
	bash bench/run.sh

fmt:
	$(CARGO) fmt --all

clean-runs:
	rm -rf $(RUNS)

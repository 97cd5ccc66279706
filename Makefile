# vidsearch developer commands. `make demo` and `make test` are the two a newcomer needs.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
# The venv is reused while pyproject.toml and the checkout's location are unchanged.
STAMP := $(VENV)/.installed-$(shell (cat pyproject.toml; pwd) | sha256sum | cut -c1-16)
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: setup test test-fast lint proto proto-check bench soak demo model clean deploy-check clients-node

setup: $(STAMP)

# Everything the tests need beyond the README's apt-get line: the venv (with buf and Node.js),
# the deployment validators in their own cached venv, and the Node client's packages.
$(STAMP): pyproject.toml deploy/validators/requirements.txt clients/node/package-lock.json
	@test -x $(PY) || python3.11 -m venv $(VENV) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	@# pip names the interpreter it ran under in its scripts' first line: run it from the venv's real
	@# path, so a venv reached through a link (CI's cached one) works from any checkout.
	"$$(realpath $(VENV))/bin/python" -m pip install -q -e '.[dev]'
	bash deploy/validators/install.sh >/dev/null
	$(VENV)/bin/npm ci --prefix clients/node --no-audit --no-fund --loglevel=error
	@rm -f $(VENV)/.installed-*; touch $@

# Lint first: what CI checks is what a newcomer's `make test` checks.
test: setup lint
	$(PY) -m pytest -q

test-fast: setup
	$(PY) -m pytest -q -m "not slow"

lint: setup
	$(VENV)/bin/ruff check services tests bench deploy docker
	$(VENV)/bin/lint-imports --no-logo --no-cache
	$(VENV)/bin/mypy
	$(VENV)/bin/buf lint
	BUF=$(VENV)/bin/buf ./scripts/buf_breaking.sh

deploy-check: setup
	PYTHON=$(PY) ./scripts/validate_deploy.sh

clients-node: setup
	$(VENV)/bin/npm ci --prefix clients/node --no-audit --no-fund

proto: setup
	PYTHON=$(PY) ./scripts/gen_protos.sh

proto-check: proto
	git diff --exit-code -- vidsearch

bench: setup
	$(PY) -m bench.report

# 16 clients mixing text, image and clip-id searches with ongoing ingest, 10 minutes.
soak: setup
	$(PY) -m bench.soak --minutes 10 --json

demo: setup
	$(PY) -m services.cli demo

# Retrains the shipped default model (models/default) from a freshly rendered corpus.
MODEL_WORK := .train/default
model: setup
	rm -rf $(MODEL_WORK)/run
	$(PY) -m services.cli synth --out $(MODEL_WORK)/corpus --preset full --seed 0 --overwrite
	$(PY) -m services.cli train --manifest $(MODEL_WORK)/corpus/manifest.jsonl --out $(MODEL_WORK)/run \
		--config tiny --temporal seqTransf --seq-motion --paraphrase --reverse-motion --reversal-margin 0.5 \
		--frames-per-clip 6 \
		--batch-size 32 --epochs 36 --lr-pretrained 3e-3 --lr-new 3e-3 --weight-decay 0.05 --seed 42 --no-progress
	mkdir -p models/default && rm -rf models/default/tokenizer
	cp -r $(MODEL_WORK)/run/model/. models/default/
	$(PY) -m services.cli eval --checkpoint models/default --manifest $(MODEL_WORK)/corpus/manifest.jsonl \
		--split test --json --no-progress > models/default/eval.json

clean:
	rm -rf .demo .bench .pytest_cache .ruff_cache

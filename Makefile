# The two commands: `make demo` and `make test`. Both create .venv on first use.
# Install order matters: torch==2.13.0 first (the CPU build this machine holds); any other
# torch request would pull a multi-GB CUDA build.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO_OUT ?= runs/demo

.PHONY: demo test lint format install clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[test]'
	# DeepSpeed JIT-compiles its shared-memory comm op on first use (~30 s): pay it here, once.
	DS_ACCELERATOR=cpu $(PY) -c "from deepspeed.ops.op_builder.cpu import ShareMemCommBuilder; ShareMemCommBuilder().load()" >/dev/null 2>&1 || echo "note: DeepSpeed comm op prebuild skipped"
	# Browser tests (report.html, sweep.html) open pages in headless Chromium: Debian's package.
	command -v chromium >/dev/null 2>&1 || (apt-get install -y -q chromium >/dev/null 2>&1 || (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium >/dev/null 2>&1)) || echo "note: chromium not installed; browser tests will skip"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/unlearn demo --out $(DEMO_OUT) --overwrite

# A small Ray Tune sweep (6 trials, up to 3 epochs, NPO / SimNPO / GradDiff) on the demo's tiny
# models, into runs/sweep-demo/ (sweep.html, pareto.json, trials.parquet); runs the demo first
# unless runs/demo already holds its target and retain-only models.
.PHONY: sweep-demo
sweep-demo: $(STAMP)
	test -f $(DEMO_OUT)/retain/model/config.json -a -f $(DEMO_OUT)/target/model/config.json || $(VENV)/bin/unlearn demo --out $(DEMO_OUT)
	$(VENV)/bin/unlearn sweep --config examples/sweep_tiny.yaml --overwrite out=runs/sweep-demo run.data.path=$(DEMO_OUT)/data run.model.path=$(DEMO_OUT)/target/model run.model.retain_model=$(DEMO_OUT)/retain/model

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

test: lint
	$(PY) -m pytest -q -ra

format: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

clean:
	rm -rf $(VENV) runs .pytest_cache

# `make serve-demo` (after `make demo`): the demo's target, NPO and GA models behind the forget10
# guard on http://127.0.0.1:$(SERVE_PORT)/v1 (OpenAI API); builds the guard index and an API key
# file on first use. Ctrl-C stops.
SERVE_PORT ?= 8000
.PHONY: serve-demo
serve-demo: $(STAMP)
	@test -f $(DEMO_OUT)/summary.json || { echo "no $(DEMO_OUT)/summary.json: run 'make demo' first"; exit 2; }
	test -f $(DEMO_OUT)/guard/manifest.json || $(VENV)/bin/unlearn guard build --data $(DEMO_OUT)/data --forget-split forget10 --out $(DEMO_OUT)/guard
	test -s $(DEMO_OUT)/api_keys.txt || (umask 077 && $(PY) -c "import secrets; print('sk-demo-' + secrets.token_urlsafe(24))" > $(DEMO_OUT)/api_keys.txt)
	$(VENV)/bin/unlearn serve \
	  --model target=$(DEMO_OUT)/target/model --model npo=$(DEMO_OUT)/npo/model --model ga=$(DEMO_OUT)/ga/model \
	  --guard target=$(DEMO_OUT)/guard --guard npo=$(DEMO_OUT)/guard --guard ga=$(DEMO_OUT)/guard \
	  --api-keys-file $(DEMO_OUT)/api_keys.txt --audit-log $(DEMO_OUT)/serve_audit.jsonl --port $(SERVE_PORT)

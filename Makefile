# The two commands of the README:  `make run`  and  `make test`.
# Everything else (venv, pip, npm ci) is set up on demand, so a fresh clone needs nothing by hand.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PY_STAMP := $(VENV)/.installed
NODE_STAMP := node_modules/.installed
ARGS ?=
export CDK_DISABLE_CLI_TELEMETRY := true
export JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION := 1
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20
export OPENBLAS_NUM_THREADS := 1
export MPLBACKEND := Agg

.PHONY: setup run test synth lint bench clean

$(PY_STAMP): requirements.txt requirements-dev.txt constraints.txt
	@$(PYTHON) -c 'import sys; v = sys.version_info; sys.exit(0 if v >= (3, 11) else f"recsys-mlops needs Python 3.11 or newer; $(PYTHON) is {v.major}.{v.minor}.{v.micro} (choose one with: make PYTHON=python3.11 ...)")'
	@echo "==> creating $(VENV) and installing pinned Python packages"
	$(PYTHON) -m venv $(VENV)
	@# pip repeats "Location ... is ignored" for find-links a machine's pip.conf names but lacks: not ours to act on
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt -r requirements-dev.txt -c constraints.txt \
	  2>&1 | grep -v "is ignored: it is neither a file nor a directory"; test $${PIPESTATUS[0]} -eq 0
	@touch $@

$(NODE_STAMP): package.json package-lock.json
	@echo "==> installing the pinned CDK CLI (npm ci)"
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

setup: $(PY_STAMP) $(NODE_STAMP)

synth: setup
	@echo "==> npx cdk synth (no AWS account needed)"
	@mkdir -p out; start=$$(date +%s); \
	if npx cdk synth --quiet --no-notices > out/synth.log 2>&1; then echo "    templates in cdk.out/ ($$(( $$(date +%s) - start )) s)"; \
	else cat out/synth.log; exit 1; fi

run: synth
	$(PY) -m recsys run $(ARGS)

# The local-run tests execute the synthesized templates in cdk.out; the browser test's Chromium comes with npm ci.
test: synth
	$(PY) -m pytest -q -n 2 --dist loadgroup

lint: setup
	$(VENV)/bin/ruff check .

# Every benchmark in bench/ at its quick size (~10 min on 2 cores); each script's --help shows larger runs.
bench: setup
	$(PY) bench/bench_generate.py --scale small
	$(PY) bench/bench_data_plane.py --scales small
	$(PY) bench/bench_recommender.py --quick
	$(PY) bench/bench_endpoint.py --workers 2 --threads 2
	$(PY) bench/bench_serving.py --cases generated,wholesale-ease-als --duration 10
	$(PY) bench/bench_soak.py --duration 90
	$(PY) bench/bench_streaming.py
	$(PY) bench/bench_faults.py
	$(PY) bench/bench_robustness.py
	$(PY) bench/bench_security.py

clean:
	rm -rf cdk.out cdk.out.* out .pytest_cache

# FastWan Serve. The two set-up commands: `make run` (the service) and `make test` (the test suite).
# Both create ./.venv and install what they need on first use.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
# CPU machines get torch 2.13 (a CPU build where one is on disk); GPU machines the default CUDA build.
TORCH  ?= $(if $(shell command -v nvidia-smi 2>/dev/null),torch,torch==2.13.0)
export RAY_AUTH_MODE ?= disabled
export RAY_USAGE_STATS_ENABLED ?= 0
export IMAGEIO_FFMPEG_NO_PREVENT_SIGINT ?= 1

.PHONY: run test soak bench tiny-model clean

$(VENV)/.base: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -e ".[diffusers,s3]"
	touch $@

$(VENV)/.test: $(VENV)/.base
	$(PY) -m pip install -q -e ".[diffusers,s3,test]"
	touch $@

tiny-model: $(VENV)/.base
	$(PY) -m serve_app.models.tiny --out models/tiny

run: tiny-model
	$(VENV)/bin/serve run configs/serve.yaml

test: $(VENV)/.test
	$(PY) -m pytest -m "not soak and not gpu" $(PYTEST_ARGS)

soak: $(VENV)/.test
	$(PY) -m pytest -m soak $(PYTEST_ARGS)

bench: $(VENV)/.test
	$(PY) bench/service_overhead.py

clean:
	rm -rf $(VENV) models data

# FastWan Serve. The two set-up commands: `make run` (the service) and `make test` (the test suite).
# Both create ./.venv and install what they need on first use.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
# CPU machines get torch 2.13 (a CPU build where one is on disk); GPU machines the default CUDA build,
# plus FastVideo (without its pins, which would replace that torch) for the fastvideo backend.
comma  := ,
GPU    := $(shell command -v nvidia-smi 2>/dev/null)
TORCH  ?= $(if $(GPU),torch torchvision,torch==2.13.0)
EXTRAS := $(if $(GPU),diffusers$(comma)s3$(comma)gpu,diffusers$(comma)s3)
export RAY_AUTH_MODE ?= disabled
export RAY_USAGE_STATS_ENABLED ?= 0
export IMAGEIO_FFMPEG_NO_PREVENT_SIGINT ?= 1

.PHONY: run test soak bench gpu-check tiny-model clean

$(VENV)/.base: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -e ".[$(EXTRAS)]"
	$(if $(GPU),$(PY) -m pip install -q --no-deps fastvideo==0.2.1)
	touch $@

$(VENV)/.test: $(VENV)/.base
	$(PY) -m pip install -q -e ".[$(EXTRAS),test]"
	touch $@

tiny-model: $(VENV)/.base
	$(PY) -m serve_app.models.tiny --out models/tiny

run: tiny-model
	$(PY) -m serve_app.launch configs/serve.yaml   # = serve run configs/serve.yaml, stopping gracefully on Ctrl-C or SIGTERM

test: $(VENV)/.test
	$(PY) -m pytest -m "not soak and not gpu" $(PYTEST_ARGS)

soak: $(VENV)/.test
	$(PY) -m pytest -m soak $(PYTEST_ARGS)

bench: $(VENV)/.test
	$(PY) bench/service_overhead.py

gpu-check:  # on a GPU machine with the packages installed: see docs/gpu.md
	bash scripts/gpu_check.sh

clean:
	rm -rf $(VENV) models data

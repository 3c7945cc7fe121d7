# FastWan Serve. The two set-up commands: `make run` (the service) and `make test` (the test suite).
# Both create ./.venv and install what they need on first use.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
# Everything comes from the lock (requirements/, made by scripts/lock.sh): torch and torchvision by version
# (requirements/torch.txt; a GPU machine takes PyTorch's CUDA 12.8 builds, as the image does; a CPU machine the
# CPU build of the same version, or PyPI's build of it where PyTorch's index cannot be reached), everything else
# by hash. GPU machines add FastVideo (requirements/fastvideo.txt, without its own pins, which would replace torch).
GPU    := $(shell command -v nvidia-smi 2>/dev/null)
# PyTorch's CPU index only where its name resolves: pip retries an unreachable index for every package (minutes).
TORCH_CPU_INDEX = $(shell $(PYTHON) -c "import socket; socket.getaddrinfo('download.pytorch.org', 443)" 2>/dev/null \
                    && echo --extra-index-url https://download.pytorch.org/whl/cpu)
TORCH_INDEX ?= $(if $(GPU),--index-url https://download.pytorch.org/whl/cu128,$(TORCH_CPU_INDEX))
PIP    := $(PY) -m pip install -q --disable-pip-version-check
export RAY_AUTH_MODE ?= disabled
export RAY_USAGE_STATS_ENABLED ?= 0
export IMAGEIO_FFMPEG_NO_PREVENT_SIGINT ?= 1

.PHONY: run test browser soak bench gpu-check tiny-model clean

$(VENV)/.base: pyproject.toml requirements/lock.txt requirements/torch.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) -r requirements/torch.txt $(TORCH_INDEX)
	$(PIP) --no-deps --require-hashes -r requirements/lock.txt
	$(if $(GPU),$(PIP) --no-deps --require-hashes -r requirements/fastvideo.txt)
	$(PIP) --no-deps -e .
	touch $@

# The tests also take FastVideo on a CPU machine (tests/fastvideo: its DiT and VAE code over gloo processes);
# without its dependencies, as on a GPU: the lock holds what its modules import.
$(VENV)/.test: $(VENV)/.base requirements/lock-test.txt requirements/fastvideo.txt
	$(PIP) --no-deps --require-hashes -r requirements/lock-test.txt
	$(PIP) --no-deps --require-hashes -r requirements/fastvideo.txt
	touch $@

tiny-model: $(VENV)/.base
	$(PY) -m serve_app.models.tiny --out models/tiny

run: tiny-model
	$(PY) -m serve_app.launch configs/serve.yaml   # = serve run configs/serve.yaml, stopping gracefully on Ctrl-C or SIGTERM

test: $(VENV)/.test browser
	$(PY) -m pytest -m "not soak and not gpu" $(PYTEST_ARGS)

browser:  # the playground's browser tests drive the system's Chromium: installed here where we may (root, apt)
	@command -v chromedriver >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
	  && apt-get update -q && apt-get install -y -q --no-install-recommends chromium chromium-driver; } \
	  || echo "no chromium + chromedriver: the browser tests will be skipped"

soak: $(VENV)/.test
	$(PY) -m pytest -m soak $(PYTEST_ARGS)

bench: $(VENV)/.test
	$(PY) bench/service_overhead.py

gpu-check:  # on a GPU machine with the packages installed: see docs/gpu.md
	bash scripts/gpu_check.sh

clean:
	rm -rf $(VENV) models data

"""The container's start-up self-check block (what the old worker printed), run by scripts/entrypoint.sh.

PyTorch and CUDA, the GPU and whether this PyTorch has kernels for it (an RTX 5090 needs sm_120), a
multiprocessing self-test (spawn + queue, which needs no shared-memory IPC), /dev/shm and WORKER_MODE.

    python -m serve_app.selfcheck
"""

from __future__ import annotations

import multiprocessing as mp
import os
import shutil


def _child(queue) -> None:
    queue.put("ok")


def main() -> None:
    import torch

    print("===== FastWan Serve container self-check =====")
    print(f"PyTorch version: {torch.__version__} (CUDA {torch.version.cuda})")
    print(f"CUDA available: {torch.cuda.is_available()}")
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        arch = f"sm_{p.major}{p.minor}"
        print(f"GPU: {p.name}, {p.total_memory / 1e9:.1f} GB, {arch}; "
              f"kernels for it in this PyTorch: {arch in torch.cuda.get_arch_list()}")
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(queue,))
    proc.start()
    print(f"multiprocessing self-test: {queue.get(timeout=120)}")
    proc.join()
    shm = shutil.disk_usage("/dev/shm").total // 2**20
    print(f"/dev/shm: {shm} MiB (64 is enough: Ray's object store then lives in /tmp)")
    print(f"WORKER_MODE: {os.environ.get('WORKER_MODE', 'http')}")
    print("==============================================", flush=True)


if __name__ == "__main__":
    main()

"""The FastVideo backend (GPU): backend.py is the backend; the other modules are its parts.

Library patches, one module each: executor.py (Ray executor), stages.py (+ ti2v.py, streaming.py: pipeline
stages), vae.py (Wan VAE); compat.py checks the FastVideo version they were written for. worker_ops.py is
what runs in the GPU worker; prestart.py starts that worker early. Importing this package imports no
FastVideo and no torch.
"""

from serve_app.backends.fastvideo.backend import FastVideoBackend

__all__ = ["FastVideoBackend"]

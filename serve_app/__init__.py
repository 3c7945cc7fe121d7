"""FastWan Serve: FastWan2.2-TI2V-5B text/image-to-video on Ray Serve."""

import os

# imageio-ffmpeg (FastVideo's video writer) forks ffmpeg with a preexec_fn that breaks a Ray worker's gRPC
# file descriptors; set here rather than in serve.yaml's runtime_env, which would cost every replica a
# worker process of its own instead of one of the workers Ray starts in advance.
os.environ.setdefault("IMAGEIO_FFMPEG_NO_PREVENT_SIGINT", "1")

__version__ = "0.1.0"

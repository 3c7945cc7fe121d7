"""FastWan Serve: FastWan2.2-TI2V-5B text/image-to-video on Ray Serve."""

__version__ = "0.1.0"

"""containerd-py: a small, readable container supervisor daemon."""

__version__ = "0.1.0"
API_VERSION = "v1"

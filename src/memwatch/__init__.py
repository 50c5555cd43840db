"""memwatch: a real-time per-process memory monitor for Linux."""

__version__ = "0.1.0"

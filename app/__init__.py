"""Metaserve: REST model serving for meta-learning."""

__version__ = "0.1.0"

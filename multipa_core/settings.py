"""Environment variables, all read here and all prefixed ``MULTIPA_``.

- ``MULTIPA_CACHE_DIR``: where joined models and feature caches live
  (default ``$XDG_CACHE_HOME/multipa`` or ``~/.cache/multipa``).
- ``MULTIPA_DATA``: the speechocean762-layout data folder
  (default ``../shared/speechocean762`` beside the project root).
- ``MULTIPA_DEVICE``: ``auto``, ``cpu`` or ``cuda`` (default ``auto``).
- ``MULTIPA_THREADS``: CPU threads per model (default: all cores).
"""

from __future__ import annotations

import os
from pathlib import Path

PREFIX = "MULTIPA_"
PROJECT_ROOT = Path(__file__).resolve().parent.parent


def _env(name: str) -> str | None:
    value = os.environ.get(PREFIX + name)
    return value if value else None


def cache_dir() -> Path:
    """The writable cache root (created on first use by whoever writes there)."""
    explicit = _env("CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "multipa"


def data_dir() -> Path:
    """The default labelled data folder."""
    explicit = _env("DATA")
    if explicit:
        return Path(explicit).expanduser()
    return PROJECT_ROOT.parent / "shared" / "speechocean762"


def device() -> str:
    """The requested compute device: ``auto``, ``cpu`` or ``cuda``."""
    return _env("DEVICE") or "auto"


def threads() -> int:
    """CPU threads for one model (0 lets the library choose)."""
    value = _env("THREADS")
    return int(value) if value else 0

"""Environment variables, all read here and all prefixed ``MULTIPA_``.

- ``MULTIPA_CACHE_DIR``: where joined models and feature caches live
  (default ``$XDG_CACHE_HOME/multipa`` or ``~/.cache/multipa``).
- ``MULTIPA_DATA``: the speechocean762-layout data folder
  (default ``../shared/speechocean762`` beside the project root).
- ``MULTIPA_DEVICE``: ``auto``, ``cpu`` or ``cuda`` (default ``auto``).
- ``MULTIPA_THREADS``: CPU threads per model (default: all cores).
- ``MULTIPA_RECOGNIZER_THREADS``: CPU threads of ASR_r beside ASR_t (default: half of those, at least 1).
- ``MULTIPA_ASR_TARGET``, ``MULTIPA_ASR_RECOGNIZED``: the Whisper models ASR_t and ASR_r,
  a registry name or a CTranslate2 Whisper directory (default: the scorer checkpoint's
  for a worker or ``multipa assess``, Whisper base and tiny.en for training).

A bad value raises :class:`~multipa_core.errors.ConfigError`; a command builds its
parser through :func:`validated`, so that it ends in one line and exit status 2,
not a traceback.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Callable, TypeVar

from .errors import ConfigError, MultipaError

PREFIX = "MULTIPA_"
DEVICES = ("auto", "cpu", "cuda")
T = TypeVar("T")
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
    value = _env("DEVICE") or "auto"
    if value not in DEVICES:
        raise ConfigError(f"{PREFIX}DEVICE must be one of {', '.join(DEVICES)}, got {value!r}")
    return value


def threads() -> int:
    """CPU threads for one model (0 lets the library choose)."""
    return _threads("THREADS", "0: all cores")


def recognizer_threads() -> int:
    """CPU threads for ASR_r when it runs beside ASR_t (0: half of ASR_t's, at least one)."""
    return _threads("RECOGNIZER_THREADS", "0: half of ASR_t's")


def _threads(name: str, zero: str) -> int:
    value = _env(name)
    if value is None:
        return 0
    try:
        number = int(value)
    except ValueError:
        number = -1
    if number < 0:
        raise ConfigError(f"{PREFIX}{name} must be a whole number of threads ({zero}), got {value!r}")
    return number


def asr_target() -> str | None:
    """ASR_t's Whisper model (None: not set)."""
    return _whisper("ASR_TARGET")


def asr_recognized() -> str | None:
    """ASR_r's Whisper model (None: not set)."""
    return _whisper("ASR_RECOGNIZED")


def _whisper(name: str) -> str | None:
    """A Whisper model named by an environment variable: a known Whisper name or an existing directory."""
    from .registry import KNOWN

    value = _env(name)
    if value is None or (value in KNOWN and KNOWN[value].kind == "whisper") or Path(value).expanduser().is_dir():
        return value
    names = ", ".join(sorted(n for n, s in KNOWN.items() if s.kind == "whisper"))
    raise ConfigError(
        f"{PREFIX}{name} must be a Whisper model name ({names}) or a CTranslate2 Whisper directory, got {value!r}"
    )


def validated(build: Callable[[], T]) -> T:
    """``build()`` (a command's parser, whose defaults read the environment); on a bad
    ``MULTIPA_*`` value, ``error [code]: sentence`` on stderr and exit status 2."""
    try:
        return build()
    except MultipaError as exc:
        print(f"error [{exc.code}]: {exc}", file=sys.stderr)
        raise SystemExit(2) from None

"""Environment variables of the server and the workers, prefixed ``MULTIPA_``, all read here.

They give the defaults of the ``multipa-server`` and ``multipa-worker`` options (a flag wins):

- ``MULTIPA_HOST``: interface to listen on (default ``127.0.0.1``).
- ``MULTIPA_PORT``: TCP port (default ``8765``; ``0`` picks a free one).
- ``MULTIPA_WORKERS``: worker processes (default ``1``).
- ``MULTIPA_API_KEYS``: comma-separated API keys; unset means no authentication.
  Prefer it to ``--api-key``, which other users can read in the process list.
- ``MULTIPA_SCORER``: scorer checkpoint name or path (default ``multipa-scorer``).
- ``MULTIPA_BATCH``: most turns a worker assesses together (default ``1``).
- ``MULTIPA_BROKER``: the MQTT broker, ``mqtt://HOST:PORT`` or ``mqtts://`` (default: none).
- ``MULTIPA_MQTT_USERNAME``, ``MULTIPA_MQTT_PASSWORD``: the broker login.

The workers' compute device, threads and Whisper models come from :mod:`multipa_core.settings`
(``MULTIPA_DEVICE``, ``MULTIPA_THREADS``, ``MULTIPA_ASR_TARGET``, ``MULTIPA_ASR_RECOGNIZED``). A bad value of any of them is a
``config_error``: :func:`validated` builds a command's parser so that it ends in one
line and exit status 2.
"""

from __future__ import annotations

import os
import sys
from typing import Callable, TypeVar

from .exceptions import ConfigError, ServerError

T = TypeVar("T")

PREFIX = "MULTIPA_"


def _env(name: str) -> str | None:
    value = os.environ.get(PREFIX + name)
    return value if value else None


def _int(name: str, default: int) -> int:
    value = _env(name)
    if value is None:
        return default
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"{PREFIX}{name} must be an integer, got {value!r}") from None


def host() -> str:
    """The interface to listen on."""
    return _env("HOST") or "127.0.0.1"


def port() -> int:
    """The TCP port to listen on."""
    return _int("PORT", 8765)


def workers() -> int:
    """How many worker processes the embedded pool runs."""
    return _int("WORKERS", 1)


def api_keys() -> tuple[str, ...]:
    """The accepted API keys (empty: authentication is off)."""
    value = _env("API_KEYS") or ""
    return tuple(k.strip() for k in value.split(",") if k.strip())


def scorer() -> str:
    """The scorer checkpoint name or path the workers load."""
    return _env("SCORER") or "multipa-scorer"


def batch() -> int:
    """Most turns a worker assesses together."""
    value = _int("BATCH", 1)
    if not 1 <= value <= 256:
        raise ConfigError(f"{PREFIX}BATCH must be from 1 to 256, got {value}")
    return value


def broker() -> str | None:
    """The MQTT broker URL (None: the embedded pool, or ``multipa-worker`` asks for one)."""
    return _env("BROKER")


def mqtt_username() -> str | None:
    """The broker user name."""
    return _env("MQTT_USERNAME")


def mqtt_password() -> str | None:
    """The broker password."""
    return _env("MQTT_PASSWORD")


def validated(build: Callable[[], T]) -> T:
    """``build()`` (a command's parser, whose defaults read the environment here and in
    :mod:`multipa_core.settings`); on a bad value, ``error [code]: sentence`` on stderr and exit 2."""
    from multipa_core.errors import MultipaError

    try:
        return build()
    except (ServerError, MultipaError) as exc:
        print(f"error [{exc.code}]: {exc}", file=sys.stderr)
        raise SystemExit(2) from None

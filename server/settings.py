"""Environment variables of the server, prefixed ``MULTIPA_``.

They give the defaults of the ``multipa-server`` options (a flag wins):

- ``MULTIPA_HOST``: interface to listen on (default ``127.0.0.1``).
- ``MULTIPA_PORT``: TCP port (default ``8765``; ``0`` picks a free one).
- ``MULTIPA_WORKERS``: worker processes (default ``1``).
- ``MULTIPA_API_KEYS``: comma-separated API keys; unset means no authentication.
  Prefer it to ``--api-key``, which other users can read in the process list.
- ``MULTIPA_SCORER``: scorer checkpoint name or path (default ``multipa-scorer``).

The workers' compute device and threads come from :mod:`multipa_core.settings`
(``MULTIPA_DEVICE``, ``MULTIPA_THREADS``). The MQTT options' defaults
(``MULTIPA_BROKER``, ``MULTIPA_MQTT_USERNAME``, ``MULTIPA_MQTT_PASSWORD``) are read
where the gateway and the worker declare them, in
:func:`server.mqtt_worker.add_broker_arguments`.
"""

from __future__ import annotations

import os

from .exceptions import ConfigError

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

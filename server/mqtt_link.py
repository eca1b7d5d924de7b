"""The broker connection shared by the MQTT gateway pool and the workers.

:class:`BrokerOptions` says where the broker is and how to log in (plain TCP or
TLS, with a password or a client certificate); :func:`session` runs one MQTT 5
connection after another with back-off until it is told to stop, so a broker
restart costs a reconnect, never the process. :func:`add_broker_arguments` gives
``multipa-worker`` and ``multipa-server`` the same broker options.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import ssl
from dataclasses import dataclass
from typing import Any, Awaitable, Callable
from urllib.parse import urlsplit

from . import settings
from .exceptions import ConfigError
from .mqtt_protocol import DEFAULT_PREFIX, WireError, check_prefix

log = logging.getLogger(__name__)

BACKOFF_S = (0.2, 0.5, 1.0, 2.0, 5.0)  # between reconnects; the last repeats


@dataclass(frozen=True)
class BrokerOptions:
    """Where the broker is and how to log in."""

    host: str = "127.0.0.1"
    port: int = 1883
    tls: bool = False  # TLS (mqtts://, or --tls)
    username: str | None = None
    password: str | None = None
    ca_file: str | None = None  # CA bundle to check the broker's certificate (default: the system's)
    cert_file: str | None = None  # client certificate, for brokers that ask for one
    key_file: str | None = None
    prefix: str = DEFAULT_PREFIX  # every topic lives under it
    keepalive_s: int = 10  # a dead peer is noticed within 1.5 times this

    @property
    def url(self) -> str:
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}"


def broker_options(url: str, *, tls: bool = False, **fields: Any) -> BrokerOptions:
    """Options from ``mqtt://HOST[:PORT]`` or ``mqtts://HOST[:PORT]`` (TLS, default port 8883).

    Raises:
        ConfigError: the URL or the prefix is invalid.
    """
    try:
        import aiomqtt  # noqa: F401
    except ImportError:
        raise ConfigError("MQTT needs the mqtt extra: pip install 'multipa-live[mqtt]'") from None
    parts = urlsplit(url if "://" in url else f"mqtt://{url}")
    if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname or parts.path not in ("", "/"):
        raise ConfigError(f"invalid broker URL {url!r}: expected mqtt://HOST:PORT or mqtts://HOST:PORT")
    tls = tls or parts.scheme == "mqtts"
    try:
        port = parts.port or (8883 if tls else 1883)
        check_prefix(fields.get("prefix", DEFAULT_PREFIX))
    except (ValueError, WireError) as exc:
        raise ConfigError(f"invalid broker option: {exc}") from None
    username = fields.pop("username", None) or parts.username
    password = fields.pop("password", None) or parts.password
    return BrokerOptions(host=parts.hostname, port=port, tls=tls, username=username, password=password, **fields)


def add_broker_arguments(parser: argparse.ArgumentParser, *, broker_help: str) -> None:
    """The broker options, shared by multipa-worker and multipa-server."""
    group = parser.add_argument_group("MQTT broker")
    group.add_argument("--broker", default=settings.broker(), help=broker_help)
    group.add_argument("--username", default=settings.mqtt_username(), help="broker user name (MULTIPA_MQTT_USERNAME)")
    group.add_argument(
        "--password",
        default=settings.mqtt_password(),
        help="broker password (MULTIPA_MQTT_PASSWORD; safer than the flag)",
    )
    group.add_argument("--tls", action="store_true", help="connect with TLS (implied by mqtts://)")
    group.add_argument("--ca-file", help="CA bundle that signed the broker's certificate (default: the system's)")
    group.add_argument("--cert-file", help="client certificate, for brokers that require one")
    group.add_argument("--key-file", help="the client certificate's key")
    group.add_argument("--prefix", default=DEFAULT_PREFIX, help=f"topic prefix (default {DEFAULT_PREFIX})")


def broker_from_args(args: argparse.Namespace) -> BrokerOptions:
    """BrokerOptions from the parsed broker arguments; raises ConfigError."""
    return broker_options(
        args.broker,
        tls=args.tls,
        username=args.username,
        password=args.password,
        ca_file=args.ca_file,
        cert_file=args.cert_file,
        key_file=args.key_file,
        prefix=args.prefix,
    )


def tls_context(options: BrokerOptions) -> ssl.SSLContext | None:
    """The TLS context of a TLS connection, else None.

    Raises:
        ConfigError: a certificate or key file cannot be read.
    """
    if not options.tls:
        return None
    try:
        context = ssl.create_default_context(cafile=options.ca_file)
        if options.cert_file:
            context.load_cert_chain(options.cert_file, options.key_file)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"cannot set up TLS: {exc}") from None
    return context


def checked(options: BrokerOptions) -> BrokerOptions:
    """The options, once their TLS files are known to load (so a bad path fails at start)."""
    tls_context(options)
    return options


def client(options: BrokerOptions, identifier: str, *, will: Any = None) -> Any:
    """An unconnected aiomqtt client speaking MQTT 5."""
    import aiomqtt
    from paho.mqtt.client import MQTTv5

    return aiomqtt.Client(
        options.host,
        options.port,
        username=options.username,
        password=options.password,
        identifier=identifier,
        protocol=aiomqtt.ProtocolVersion(MQTTv5),
        will=will,
        keepalive=options.keepalive_s,
        timeout=10.0,
        tls_context=tls_context(options),
    )


async def session(
    options: BrokerOptions,
    identifier: str,
    connected: Callable[[Any], Awaitable[None]],
    disconnected: Callable[[], None],
    *,
    will: Any = None,
    stop: asyncio.Event,
) -> None:
    """Connect, call ``connected(client)`` (it subscribes and reads messages until the
    connection drops), call ``disconnected()``, wait, and connect again, until ``stop`` is set."""
    import aiomqtt

    failures = 0
    while not stop.is_set():
        try:
            async with client(options, identifier, will=will) as mqtt:
                if failures:
                    log.warning("reconnected to the broker at %s", options.url)
                failures = 0
                await connected(mqtt)
        except aiomqtt.MqttError as exc:
            if failures == 0:
                log.warning("broker %s: %s; reconnecting", options.url, exc)
            failures += 1
        finally:
            disconnected()
        if stop.is_set():
            return
        delay = BACKOFF_S[min(max(failures - 1, 0), len(BACKOFF_S) - 1)]
        try:
            await asyncio.wait_for(stop.wait(), delay)
        except asyncio.TimeoutError:
            pass

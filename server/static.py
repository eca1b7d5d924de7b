"""The browser SDK and the demo page over plain HTTP: ``GET /sdk/<file>`` and ``GET /demo``.

The files live in the installed ``multipa_client`` package (``client_sdk/js/``
in the source tree). Only the names listed in :data:`FILES` are served: a
request can never reach another file, whatever its path. Responses carry an
ETag and ``Cache-Control: no-cache``, so browsers revalidate and an upgraded
server is picked up at once; an unchanged file costs a 304.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import importlib.util
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path

from websockets.asyncio.server import ServerConnection
from websockets.http11 import Request, Response

JS = "text/javascript; charset=utf-8"

# what may be served, by name: file -> Content-Type
FILES = {
    "multipa.js": JS,
    "pcm.js": JS,
    "pcm-worklet.js": JS,
    "demo.js": JS,
    "demo.css": "text/css; charset=utf-8",
    "demo.html": "text/html; charset=utf-8",
}
SDK_PREFIX = "/sdk/"
DEMO_PATH = "/demo"

# the demo loads its scripts and styles from this server and talks to its websocket only
DEMO_CSP = "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"


@dataclass(frozen=True)
class StaticFile:
    """One file ready to send."""

    body: bytes
    content_type: str
    etag: str  # quoted, as in the header


@functools.lru_cache(maxsize=1)
def js_dir() -> Path:
    """Where the installed ``multipa_client`` keeps its ``js/`` files (found without importing it)."""
    spec = importlib.util.find_spec("multipa_client")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the multipa_client package is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "js"


def demo_url(host: str, port: int) -> str:
    """The demo page's address for people: a wildcard host becomes ``localhost``, where
    browsers allow the microphone without https."""
    host = "localhost" if host in ("0.0.0.0", "::", "") else host
    host = f"[{host}]" if ":" in host else host
    return f"http://{host}:{port}{DEMO_PATH}"


def route(path: str) -> str | None:
    """The file name that a request path maps to, or None when it is not a static path.

    ``/demo`` and ``/demo/`` give the demo page; ``/sdk/NAME`` gives NAME when it is
    listed in :data:`FILES`, and ``""`` (not found) for any other name under ``/sdk/``.
    """
    if path in (DEMO_PATH, DEMO_PATH + "/"):
        return "demo.html"
    if path.startswith(SDK_PREFIX):
        name = path[len(SDK_PREFIX) :]
        return name if name in FILES else ""
    return None


def load(name: str) -> StaticFile | None:
    """Read a listed file (read per request: a few kilobytes, and edits show without a restart)."""
    if name not in FILES:
        return None
    try:
        body = (js_dir() / name).read_bytes()
    except OSError:
        return None
    return StaticFile(body, FILES[name], '"' + hashlib.sha256(body).hexdigest()[:20] + '"')


def headers_for(name: str, file: StaticFile) -> dict[str, str]:
    """Response headers of a served file."""
    headers = {
        "Content-Type": file.content_type,
        "Cache-Control": "no-cache",
        "ETag": file.etag,
        "X-Content-Type-Options": "nosniff",
    }
    if name == "demo.html":
        headers["Content-Security-Policy"] = DEMO_CSP
        headers["Referrer-Policy"] = "no-referrer"
    return headers


def not_modified(file: StaticFile, if_none_match: str | None) -> bool:
    """Whether the client's cached copy (If-None-Match) is current."""
    if not if_none_match:
        return False
    return if_none_match.strip() == "*" or file.etag in [
        tag.strip().removeprefix("W/") for tag in if_none_match.split(",")
    ]


def respond(connection: ServerConnection, request: Request, name: str) -> Response:
    """The response to a GET of a static path (``name`` from :func:`route`): 200, 304 or 404."""
    file = load(name) if name else None
    if file is None:
        return connection.respond(
            HTTPStatus.NOT_FOUND, f"not found; the SDK files are {', '.join(SDK_PREFIX + n for n in FILES)}\n"
        )
    fresh = not_modified(file, request.headers.get("If-None-Match"))
    response = connection.respond(HTTPStatus.NOT_MODIFIED if fresh else HTTPStatus.OK, "")
    del response.headers["Content-Type"], response.headers["Content-Length"]
    for key, value in headers_for(name, file).items():
        response.headers[key] = value
    if fresh:
        return response
    response.headers["Content-Length"] = str(len(file.body))
    return dataclasses.replace(response, body=file.body)

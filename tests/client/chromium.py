"""Headless Debian Chromium driven over the DevTools protocol, for the browser tests.

No WebDriver: the test starts ``/usr/bin/chromium`` itself and talks to it over
its DevTools websocket with the ``websockets`` package the server already
needs, so no tool can download a browser or a driver. Every request that is not
for a loopback address goes to :class:`TrapProxy`, which records it and answers
nothing: the test never reaches the network, and can tell whether it tried.
"""

from __future__ import annotations

import base64
import json
import shutil
import socket
import subprocess
import threading
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from websockets.sync.client import connect

CHROMIUM = "/usr/bin/chromium"

FLAGS = [
    "--headless",
    "--no-sandbox",  # root in a container has no user namespace for the sandbox
    "--disable-gpu",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-features=NetworkTimeServiceQuerying,OptimizationHints,OptimizationHintsFetching,OptimizationGuideModelDownloading,AutofillServerCommunication,MediaRouter,Translate",
    "--disable-client-side-phishing-detection",
    "--disable-domain-reliability",
    "--safebrowsing-disable-auto-update",
    "--metrics-recording-only",
    "--no-pings",
    "--disable-breakpad",
    "--disable-extensions",
    "--disable-default-apps",
    "--mute-audio",
    "--autoplay-policy=no-user-gesture-required",
    "--remote-debugging-port=0",
    "--remote-allow-origins=*",
]


NOTHING_SENT = "(connected, sent nothing)"


class TrapProxy:
    """A local "proxy" that records the first line of every request sent to it and closes."""

    def __init__(self) -> None:
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen()
        self.port = self._sock.getsockname()[1]
        self.requests: list[str] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(
                target=self._record, args=(conn,), daemon=True
            ).start()  # a silent socket holds up no other

    def _record(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(10)
            try:
                self.requests.append(conn.recv(4096).split(b"\r\n", 1)[0].decode(errors="replace") or NOTHING_SENT)
            except OSError:
                self.requests.append(NOTHING_SENT)

    def hosts(self) -> set[str]:
        """The hosts asked for (``CONNECT host:443`` and ``GET http://host/...`` alike).

        A connection that sends nothing asks for no host: Chromium opens such
        sockets ahead of need (preconnects) and may close them unused."""
        found = set()
        for line in self.requests:
            parts = line.split()
            if line == NOTHING_SENT:
                continue
            if len(parts) >= 2 and not line.startswith("("):
                found.add(parts[1].split("://", 1)[-1].split("/", 1)[0].rsplit(":", 1)[0])
            else:
                found.add(line)
        return found

    def close(self) -> None:
        self._sock.close()


class CdpError(RuntimeError):
    """A DevTools command failed, or a page script threw."""


class Chromium:
    """One headless Chromium with one page; a fake microphone plays ``wav`` in a loop."""

    def __init__(self, profile: Path, *, wav: Path, timeout: float = 60.0) -> None:
        if not Path(CHROMIUM).is_file():
            raise FileNotFoundError(CHROMIUM)
        self.log_path = profile.parent / "chromium.log"
        self._log = open(self.log_path, "w")
        mic = [
            "--use-fake-ui-for-media-stream",
            "--use-fake-device-for-media-stream",
            f"--use-file-for-fake-audio-capture={wav}",
        ]
        self.proxy = TrapProxy()  # everything but loopback (which Chromium never proxies) ends here
        proxy = f"--proxy-server=http://127.0.0.1:{self.proxy.port}"
        self.proc = subprocess.Popen(
            [CHROMIUM, *FLAGS, *mic, proxy, f"--user-data-dir={profile}", "about:blank"],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + timeout
        while not (port_file.is_file() and len(port_file.read_text().split()) == 2):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.close()
                raise RuntimeError(f"chromium did not start: {self.log_path.read_text()[-3000:]}")
            time.sleep(0.1)
        port, path = port_file.read_text().split()
        self._stack = ExitStack()
        self._ws = self._stack.enter_context(
            connect(f"ws://127.0.0.1:{port}{path}", max_size=None, open_timeout=timeout)
        )
        self._next_id = 0
        self.events: list[dict[str, Any]] = []
        target = self.call("Target.createTarget", url="about:blank", session=False)["targetId"]
        self._session = self.call("Target.attachToTarget", targetId=target, flatten=True, session=False)["sessionId"]
        for domain in ("Page", "Runtime", "Network"):
            self.call(f"{domain}.enable")

    def call(self, method: str, *, session: bool = True, timeout: float = 60.0, **params: Any) -> dict[str, Any]:
        """Send one command and wait for its answer; events that arrive meanwhile are kept."""
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params}
        if session:
            message["sessionId"] = self._session
        self._ws.send(json.dumps(message))
        deadline = time.monotonic() + timeout
        while True:
            reply = json.loads(self._ws.recv(timeout=max(0.1, deadline - time.monotonic())))
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise CdpError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            if "method" in reply:
                self.events.append(reply)

    def evaluate(self, expression: str, *, timeout: float = 60.0) -> Any:
        """The value of a page expression (promises awaited), or CdpError with the script's exception."""
        result = self.call(
            "Runtime.evaluate",
            expression=expression,
            returnByValue=True,
            awaitPromise=True,
            userGesture=True,
            timeout=timeout,
        )
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            raise CdpError(details.get("exception", {}).get("description") or details.get("text"))
        return result["result"].get("value")

    def wait_for(self, expression: str, *, timeout: float, what: str = "") -> Any:
        """Poll a page expression until it is truthy; its value."""
        deadline = time.monotonic() + timeout
        while True:
            value = self.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"waited {timeout:.0f} s for {what or expression}")
            time.sleep(0.25)

    def viewport(self, width: int, height: int, *, mobile: bool = False) -> None:
        self.call("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=mobile)

    def open(self, url: str, *, timeout: float = 30.0) -> None:
        self.call("Page.navigate", url=url)
        self.wait_for(
            "document.readyState === 'complete' && location.href !== 'about:blank'",
            timeout=timeout,
            what=f"{url} to load",
        )

    def click(self, selector: str) -> None:
        """A real mouse click (a user gesture) in the middle of the element."""
        box = self.evaluate(
            f"(() => {{ const r = document.querySelector({json.dumps(selector)}).getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2]; }})()"
        )
        for kind in ("mousePressed", "mouseReleased"):
            self.call("Input.dispatchMouseEvent", type=kind, x=box[0], y=box[1], button="left", clickCount=1)

    def type(self, selector: str, text: str) -> None:
        self.evaluate(f"document.querySelector({json.dumps(selector)}).focus()")
        self.call("Input.insertText", text=text)

    def screenshot(self, path: Path, *, full_page: bool = False) -> Path:
        params: dict[str, Any] = {"format": "png"}
        if full_page:
            params["captureBeyondViewport"] = True
        path.write_bytes(base64.b64decode(self.call("Page.captureScreenshot", **params)["data"]))
        return path

    def requested_urls(self) -> list[str]:
        """Every URL the page asked for (documents, scripts, websockets), in order."""
        urls = [e["params"]["request"]["url"] for e in self.events if e["method"] == "Network.requestWillBeSent"]
        return urls + [e["params"]["url"] for e in self.events if e["method"] == "Network.webSocketCreated"]

    def exceptions(self) -> list[str]:
        """Uncaught exceptions of the page's scripts."""
        return [
            e["params"]["exceptionDetails"]
            .get("exception", {})
            .get("description", e["params"]["exceptionDetails"].get("text", ""))
            for e in self.events
            if e["method"] == "Runtime.exceptionThrown"
        ]

    def close(self) -> None:
        try:
            if getattr(self, "_stack", None) is not None:
                self._stack.close()
        finally:
            if self.proc.poll() is None:
                self.proc.terminate()
                try:
                    self.proc.wait(15)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
            self._log.close()
            self.proxy.close()


def available() -> bool:
    """Whether Debian's chromium is installed (``apt-get install chromium``)."""
    return shutil.which(CHROMIUM) is not None

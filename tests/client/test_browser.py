"""The browser SDK and the demo page in real headless Chromium against the real server.

Chromium's fake microphone plays a shared utterance in a loop (with silences
long enough for the VAD to close each turn); the page must show an assessed
turn with coloured words and sentence bars, stop cleanly, and fit a 360 px
screen. Screenshots go to pytest's tmp dir (their paths are printed).
"""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request

import numpy as np
import pytest

from ..server.conftest import scorer  # noqa: F401  (the fixture)
from ..server.speech import RATE, silence, utterance
from ..server.wsclient import ServerProcess, http_get
from .chromium import Chromium, available

pytestmark = [
    pytest.mark.models,
    pytest.mark.browser,
    pytest.mark.skipif(not available(), reason="needs Debian chromium at /usr/bin/chromium"),
]

KEY = "browser-key"
UTT = "004820045"  # THIS IS A GOOD STEP
WORDS = "[...document.querySelectorAll('.turn.assessed button.word')]"
# Chromium 156 calls these by itself whatever the flags (update.googleapis.com: an on-demand
# component check; accounts.google.com: the account cookie check); the trap proxy answers
# nothing, so they never leave the machine
CHROMIUM_OWN_DOMAINS = (".googleapis.com", ".google.com")
BAND_COLOURS = {"good": "rgb(23, 115, 58)", "fair": "rgb(138, 83, 0)", "poor": "rgb(179, 38, 30)"}  # demo.css


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def band_of(score: float) -> str:
    return "good" if score >= 8 else "fair" if score >= 6 else "poor"


@pytest.fixture(scope="module")
def server(scorer, tmp_path_factory):  # noqa: F811
    process = ServerProcess(
        ["--workers", "1", "--scorer", scorer, "--api-key", KEY], tmp_path_factory.mktemp("server") / "server.log"
    )
    # the line after "listening on": where a new user opens the demo
    process.demo = process.proc.stdout.readline().strip().removeprefix("demo: ")
    yield process
    assert process.stop() == 0, process.log()[-3000:]
    assert "Traceback" not in process.log()


@pytest.fixture(scope="module")
def microphone(tmp_path_factory):
    """What the fake microphone plays, looped: 0.8 s silence, the utterance, 2.5 s silence (16-bit WAV)."""
    import soundfile as sf

    path = tmp_path_factory.mktemp("mic") / "utterance.wav"
    sf.write(path, np.concatenate([silence(0.8), utterance(UTT), silence(2.5)]), RATE, subtype="PCM_16")
    return path


@pytest.fixture
def browser(tmp_path, microphone):
    chromium = Chromium(tmp_path / "profile", wav=microphone)
    yield chromium
    chromium.close()


def test_the_sdk_files_are_served_without_a_key(server):
    assert server.demo == server.http + "/demo"
    status, content_type, body = http_get(server.http + "/sdk/multipa.js")
    assert (status, content_type) == (200, "text/javascript; charset=utf-8") and "export class MultipaClient" in body
    assert http_get(server.http + "/sdk/pcm-worklet.js")[:2] == (200, "text/javascript; charset=utf-8")
    status, content_type, body = http_get(server.http + "/demo")
    assert (status, content_type) == (200, "text/html; charset=utf-8") and 'src="sdk/demo.js"' in body
    for path in ["/sdk/../app.py", "/sdk/%2E%2E/static.py", "/sdk/__init__.py", "/sdk/package.json"]:
        assert http_get(server.http + path)[0] == 404, path
    with urllib.request.urlopen(server.http + "/sdk/multipa.js", timeout=10) as response:
        etag, cache = response.headers["ETag"], response.headers["Cache-Control"]
    assert cache == "no-cache"
    try:
        urllib.request.urlopen(
            urllib.request.Request(server.http + "/sdk/multipa.js", headers={"If-None-Match": etag}), timeout=10
        )
        raise AssertionError("expected 304")
    except urllib.error.HTTPError as exc:
        assert exc.code == 304


def test_the_demo_page_assesses_what_the_microphone_hears(server, browser, tmp_path):
    browser.viewport(900, 1100)
    browser.open(server.demo)

    # a wrong key first: the page says why it cannot start, and releases the microphone
    browser.click("#start")
    browser.wait_for("!document.getElementById('alert').hidden", timeout=60, what="the error for a missing key")
    assert browser.evaluate("document.querySelector('#alert code').textContent") == "unauthorized"
    assert browser.evaluate("document.getElementById('state').dataset.state") == "closed"

    browser.type("#api-key", KEY)
    browser.click("#start")
    browser.wait_for(
        "document.getElementById('state').dataset.state === 'listening'", timeout=60, what="the session to start"
    )
    # the worklet streams real 16 kHz audio: the server hears a turn and the page shows its words
    browser.wait_for(f"{WORDS}.length > 0", timeout=180, what="an assessed turn")

    words = browser.evaluate(
        f"{WORDS}.map(b => ({{text: b.firstChild.textContent, score: Number(b.dataset.score), cls: b.className, title: b.title}}))"
    )
    assert len(words) >= 3, words  # THIS IS A GOOD STEP, as the ASR heard it
    for w in words:
        assert f"score-{band_of(w['score'])}" in w["cls"], w
        assert str(w["score"]) in w["title"] and " ms, " in w["title"], w  # phone details on hover
    colours = browser.evaluate(f"{WORDS}.map(b => getComputedStyle(b).color)")
    assert colours == [BAND_COLOURS[band_of(w["score"])] for w in words]  # the colour the page's CSS gives each band
    bars = browser.evaluate(
        "[...document.querySelectorAll('.turn.assessed .bar')].map(b => [b.dataset.aspect, Number(b.dataset.value), b.firstChild.style.width])"
    )
    aspects = {a for a, _, _ in bars}
    assert {"accuracy", "fluency", "prosody", "total"} <= aspects, bars
    for aspect, value, width in bars:
        assert 0 <= value <= 10 and width.endswith("%") and abs(float(width[:-1]) - value * 10) < 0.6, (
            aspect,
            value,
            width,
        )

    # tapping a word lists its phones with times and probabilities
    browser.click(".turn.assessed button.word")
    rows = browser.wait_for(
        "[...document.querySelectorAll('.turn.assessed .phones tbody tr')].map(r => r.textContent)",
        timeout=10,
        what="the phone table",
    )
    # a canonical phone's row has its time and probability; a phone the learner added has a row that says so
    assert rows and any(" ms" in r for r in rows) and all((" ms" in r and "%" in r) or "added" in r for r in rows), rows

    shot = browser.screenshot(tmp_path / "demo.png")
    print(f"\nscreenshot: {shot}")

    # a phone-sized screen: nothing wider than the viewport
    browser.viewport(360, 740, mobile=True)
    browser.wait_for("window.innerWidth === 360", timeout=10)
    widths = browser.evaluate("[document.documentElement.scrollWidth, document.body.scrollWidth, window.innerWidth]")
    assert widths[0] <= widths[2] and widths[1] <= widths[2], widths
    print(f"narrow screenshot: {browser.screenshot(tmp_path / 'demo-360.png')}")

    # a dropped connection: the SDK opens a new session, the turn it interrupted fails with a
    # code instead of hanging, and feedback goes on
    # (the first attempt goes to a port where nothing listens, as if the server were still down)
    first, down = browser.evaluate("window.multipaDemo.client.sessionId"), f"127.0.0.1:{free_port()}"
    browser.evaluate(
        "const c = window.multipaDemo.client; window.__reconnects = []; window.__url = c.options.url;"
        "c.addEventListener('reconnecting', e => window.__reconnects.push(e.detail));"
        f"c.options.backoffMs = 3000; c.options.url = 'ws://{down}/v1/stream';"
        "c._ws.close(4000, 'test: a dropped connection'); true"
    )
    browser.wait_for("window.__reconnects.length === 2", timeout=60, what="a second attempt")
    browser.evaluate("window.multipaDemo.client.options.url = window.__url; true")  # the server is back
    browser.wait_for(
        f"window.multipaDemo.client.sessionId !== {json.dumps(first)} && ['listening', 'assessing'].includes(window.multipaDemo.client.state)",
        timeout=60,
        what="a new session",
    )
    assert browser.evaluate("window.__reconnects.map(r => [r.attempt, r.closeCode])") == [[1, 4000], [2, 1006]]
    browser.wait_for(
        "document.querySelectorAll('.turn.assessed[data-session=\"2\"] button.word').length > 0",
        timeout=180,
        what="an assessed turn after the reconnect",
    )

    # Stop: session.end, the last feedback, session.ended; microphone and audio context released
    browser.evaluate(
        "window.__audio = {tracks: window.multipaDemo.client.mediaStream.getTracks(), context: window.multipaDemo.client.audioContext}; true"
    )
    browser.click("#start")
    browser.wait_for(
        "document.getElementById('state').dataset.state === 'closed'", timeout=180, what="the session to end"
    )
    summary = browser.evaluate("document.getElementById('summary').textContent")
    assert summary.startswith("Session ended:") and " 0 assessed" not in summary, summary
    released = browser.evaluate("[window.__audio.tracks.map(t => t.readyState), window.__audio.context.state]")
    assert released == [["ended"] * len(released[0]), "closed"] and released[0], released
    # every turn card ended assessed or failed with a code shown
    statuses = browser.evaluate("[...document.querySelectorAll('.turn')].map(t => [t.className, t.textContent])")
    assert all("assessed" in c or ("failed" in c and ":" in text) for c, text in statuses), statuses

    # closed mode: the sentence in the box is every turn's reference (queued until the session opens)
    browser.click("#closed-mode")
    browser.click("#start")
    browser.wait_for("!!document.querySelector('.turn.assessed .target')", timeout=180, what="a closed-mode turn")
    assert (
        browser.evaluate("document.querySelector('.turn.assessed .target').textContent")
        == "Expected: This is a good step."
    )
    assert browser.evaluate("!!document.querySelector('.turn.assessed .bar[data-aspect=\"completeness\"]')")
    browser.click("#start")
    browser.wait_for(
        "document.getElementById('state').dataset.state === 'closed'",
        timeout=180,
        what="the closed-mode session to end",
    )
    statuses = browser.evaluate("[...document.querySelectorAll('.turn')].map(t => [t.className, t.textContent])")
    assert all("assessed" in c or ("failed" in c and ":" in text) for c, text in statuses), statuses
    assert not any("reference_missing" in text for _, text in statuses), statuses

    assert browser.exceptions() == []
    # the page only ever talked to the test server
    urls = browser.requested_urls()
    hosts = {server.http.split("://", 1)[1], down}
    assert urls and all(u.split("://", 1)[1].split("/", 1)[0] in hosts for u in urls), urls
    assert any(u.startswith("ws://") and "/v1/stream?api_key=" in u for u in urls)
    # nothing left the machine: non-loopback traffic goes to the trap proxy, where only
    # Chromium's own calls to Google services turn up (none of the page's)
    assert all(host.endswith(CHROMIUM_OWN_DOMAINS) for host in browser.proxy.hosts()), browser.proxy.requests
    print(f"trapped, Chromium's own: {sorted(browser.proxy.hosts())}")
    print(json.dumps({"words": [(w["text"], w["score"]) for w in words], "bars": bars}))

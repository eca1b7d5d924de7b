"""The browser SDK and demo files: routing, the name whitelist, headers and the installed package."""

from __future__ import annotations

from multipa_server import static


def test_routes_map_to_listed_names_only():
    assert static.route("/demo") == static.route("/demo/") == "demo.html"
    assert static.route("/sdk/multipa.js") == "multipa.js"
    for path in [
        "/sdk/../app.py",
        "/sdk/%2e%2e/app.py",
        "/sdk/js/multipa.js",
        "/sdk/",
        "/sdk/__init__.py",
        "/sdk/package.json",
        "/sdk/multipa.js/",
    ]:
        assert static.route(path) == "", path
    assert static.route("/healthz") is None and static.route("/sdkx/multipa.js") is None


def test_every_listed_file_is_installed_with_its_type():
    for name, content_type in static.FILES.items():
        file = static.load(name)
        assert file is not None and file.body, name
        assert file.content_type == content_type
        headers = static.headers_for(name, file)
        assert (
            headers["Cache-Control"] == "no-cache"
            and headers["ETag"] == file.etag
            and headers["X-Content-Type-Options"] == "nosniff"
        )
    assert static.FILES["pcm-worklet.js"].startswith("text/javascript")
    assert "Content-Security-Policy" in static.headers_for("demo.html", static.load("demo.html"))
    assert static.load("../app.py") is None and static.load("") is None


def test_etags_answer_304():
    file = static.load("multipa.js")
    assert static.not_modified(file, file.etag) and static.not_modified(file, f'"x", W/{file.etag}')
    assert not static.not_modified(file, '"other"') and not static.not_modified(file, None)


def test_the_demo_url_is_one_a_browser_can_open():
    assert static.demo_url("127.0.0.1", 8765) == "http://127.0.0.1:8765/demo"
    assert static.demo_url("0.0.0.0", 80) == static.demo_url("::", 80) == "http://localhost:80/demo"
    assert static.demo_url("::1", 8765) == "http://[::1]:8765/demo"

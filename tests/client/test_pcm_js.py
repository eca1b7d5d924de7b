"""The browser SDK's pure helpers under Node's test runner: audio (resampler, PCM16, framing)
and the score aspects (unknown ones kept)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


@pytest.mark.parametrize("script", ["test_pcm.mjs", "test_aspects.mjs"])
def test_js_helpers_under_node(script):
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed (the browser test covers the same code in Chromium)")
    proc = subprocess.run([node, "--test", str(HERE / script)], capture_output=True, text=True, timeout=120, cwd=HERE)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "# fail 0" in proc.stdout and "# pass 0" not in proc.stdout

"""A disk cache of per-utterance arrays and JSON, shared by every training job.

Entries are written atomically (temporary file, then rename), so a killed job
leaves no half-written entry and a resumed job picks up where it stopped. When
the cache directory is not writable, the cache keeps working in memory and says
so once.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import numpy as np

log = logging.getLogger(__name__)
_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


class ArrayCache:
    """Arrays and JSON documents stored under ``root/namespace``.

    Args:
        root: the cache directory.
        namespace: a key naming what produced the entries (model names, versions).
    """

    def __init__(self, root: str | Path, namespace: str) -> None:
        self.dir = Path(root) / _SAFE.sub("_", namespace)
        self._memory: dict[tuple[str, str], Any] = {}  # (kind, key): entries kept when the disk is not writable
        self._writable = True
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            self._disable(exc)

    def _disable(self, exc: OSError) -> None:
        if self._writable:
            log.warning("feature cache %s is not writable (%s); caching in memory only", self.dir, exc)
        self._writable = False

    def _path(self, key: str, suffix: str) -> Path:
        return self.dir / f"{_SAFE.sub('_', key)}{suffix}"

    def get_array(self, key: str) -> np.ndarray | None:
        if ("a", key) in self._memory:
            return self._memory[("a", key)]
        path = self._path(key, ".npy")
        try:
            return np.load(path)
        except (OSError, ValueError):
            return None

    def put_array(self, key: str, value: np.ndarray) -> None:
        self._write(key, ".npy", lambda handle: np.save(handle, value), ("a", key), value)

    def get_arrays(self, key: str) -> dict[str, np.ndarray] | None:
        """A named group of arrays (one ``.npz`` file)."""
        if ("z", key) in self._memory:
            return self._memory[("z", key)]
        try:
            with np.load(self._path(key, ".npz")) as archive:
                return {name: archive[name] for name in archive.files}
        except (OSError, ValueError, KeyError):
            return None

    def put_arrays(self, key: str, value: dict[str, np.ndarray]) -> None:
        # allow_pickle named (at its default) so that no array of ``value`` can be taken for it
        self._write(key, ".npz", lambda handle: np.savez(handle, allow_pickle=True, **value), ("z", key), value)

    def get_json(self, key: str) -> Any:
        if ("j", key) in self._memory:
            return self._memory[("j", key)]
        try:
            return json.loads(self._path(key, ".json").read_text())
        except (OSError, ValueError):
            return None

    def put_json(self, key: str, value: Any) -> None:
        text = json.dumps(value).encode()
        self._write(key, ".json", lambda handle: handle.write(text), ("j", key), value)

    def _write(
        self, key: str, suffix: str, writer: Callable[[IO[bytes]], object], memory_key: tuple[str, str], value: Any
    ) -> None:
        if self._writable:
            tmp: str | None = None
            try:
                fd, tmp = tempfile.mkstemp(dir=self.dir, prefix=".tmp-", suffix=suffix)
                with os.fdopen(fd, "wb") as handle:
                    writer(handle)
                os.replace(tmp, self._path(key, suffix))
                tmp = None
                return
            except OSError as exc:
                self._disable(exc)
            finally:
                if tmp is not None:  # a failed write or rename leaves no temporary file
                    with contextlib.suppress(OSError):
                        os.unlink(tmp)
        self._memory[memory_key] = value

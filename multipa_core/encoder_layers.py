"""Every layer of ASR_t's Whisper encoder, run in PyTorch from the CTranslate2 weights.

CTranslate2 returns only the encoder's last layer, the one shaped for the
decoder. The layers below it keep more of how a learner sounds: the mean and
standard deviation of all six layers of Whisper base, added to the sentence
probe's inputs, raise its validation PCC on every aspect
(``bench/probe_inputs.py``, docs/models.md). This module reads the encoder's weights from the model's
``model.bin`` (CTranslate2's binary format; float32, float16 or int8 with
scales), runs the same encoder on a turn's log-mel frames inside the audio (no
padding to a 30 s window: a fifth of the work for a 6 s turn), and summarises
each layer's output over time.

Nothing is downloaded and nothing new is shipped: the weights are those of the
ASR_t model the pipeline already loads.
"""

from __future__ import annotations

import math
import struct
from pathlib import Path
from typing import Any, BinaryIO, Iterator

import numpy as np

from . import registry
from .errors import ModelFilesError

BINARY_VERSIONS = (5, 6)  # CTranslate2 model.bin versions read here
_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}  # CTranslate2's DataType ids
MEL_FRAMES_PER_FRAME = 2  # the second convolution's stride
SAMPLES_PER_MEL_FRAME = 160  # 10 ms hop at 16 kHz


def read_variables(path: str | Path, prefix: str = "encoder/") -> dict[str, np.ndarray]:
    """The variables of a CTranslate2 ``model.bin`` whose names start with ``prefix``.

    Raises:
        ModelFilesError: the file is missing, truncated or not a CTranslate2 model.
    """
    try:
        with open(path, "rb") as handle:
            return _read(handle, prefix)
    except (OSError, struct.error, UnicodeDecodeError, ValueError) as exc:
        raise ModelFilesError(f"cannot read the CTranslate2 model {path}: {exc}") from exc


def read_shapes(path: str | Path, prefix: str = "encoder/") -> dict[str, tuple[int, ...]]:
    """The shapes of a CTranslate2 ``model.bin``'s variables whose names start with ``prefix``,
    from its headers alone (the weights are skipped, not read: milliseconds).

    Raises:
        ModelFilesError: the file is missing, truncated or not a CTranslate2 model.
    """
    try:
        with open(path, "rb") as handle:
            return {name: tuple(dims) for name, dims, _, _ in _headers(handle, prefix, load=False)}
    except (OSError, struct.error, UnicodeDecodeError, ValueError) as exc:
        raise ModelFilesError(f"cannot read the CTranslate2 model {path}: {exc}") from exc


def _read(handle: BinaryIO, prefix: str) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for name, dims, dtype, raw in _headers(handle, prefix, load=True):
        if dtype not in _DTYPES:
            raise ValueError(f"variable {name} has an unknown data type {dtype}")
        out[name] = np.frombuffer(raw, dtype=_DTYPES[dtype]).reshape(dims)
    return out


def _headers(handle: BinaryIO, prefix: str, *, load: bool) -> Iterator[tuple[str, list[int], int, bytes]]:
    """Each variable named ``prefix...``: its name, shape, data type id and (``load``) its bytes."""

    def number(fmt: str) -> int:
        size = struct.calcsize(fmt)
        raw = handle.read(size)
        if len(raw) != size:
            raise ValueError("the file ends early")
        return struct.unpack(fmt, raw)[0]

    def string() -> str:
        return handle.read(number("H"))[:-1].decode("utf-8")

    version = number("I")
    if version not in BINARY_VERSIONS:
        raise ValueError(f"binary version {version}, expected one of {BINARY_VERSIONS}")
    string()  # the spec's name
    number("I")  # its revision
    for _ in range(number("I")):
        name = string()
        dims = [number("I") for _ in range(number("B"))]
        dtype, size = number("B"), number("I")
        if not (load and name.startswith(prefix)):
            handle.seek(size, 1)  # not wanted, or only its shape
            if name.startswith(prefix):
                yield name, dims, dtype, b""
            continue
        raw = handle.read(size)
        if len(raw) != size:
            raise ValueError("the file ends early")
        yield name, dims, dtype, raw


def mel_frames(num_samples: int) -> int:
    """Log-mel frames covering ``num_samples`` of 16 kHz audio, even, within one 30 s window."""
    return min(
        3000, MEL_FRAMES_PER_FRAME * max(1, math.ceil(num_samples / (SAMPLES_PER_MEL_FRAME * MEL_FRAMES_PER_FRAME)))
    )


class EncoderLayers:
    """A Whisper encoder whose every layer's output can be read.

    Args:
        model: registry name or CTranslate2 Whisper directory (ASR_t's by default).
        device: ``cpu`` or ``cuda``.

    Raises:
        ModelFilesError: the directory has no readable ``model.bin`` or it lacks encoder weights.
    """

    def __init__(self, model: str = "whisper-base", *, device: str = "cpu") -> None:
        import torch

        variables = read_variables(Path(registry.resolve(model, kind="whisper")) / "model.bin")
        weights: dict[str, Any] = {}
        for name, value in variables.items():
            if name.endswith("_scale") or value.ndim == 0:
                continue
            array = value.astype(np.float32)
            if value.dtype == np.int8:  # CTranslate2 int8: one scale per output row, w = q / scale
                array = array / variables[f"{name}_scale"].astype(np.float32).reshape(-1, *([1] * (value.ndim - 1)))
            weights[name] = torch.from_numpy(array).to(device)
        try:
            self.heads = int(variables["encoder/num_heads"])
            self.layers = sum(
                1 for name in weights if name.startswith("encoder/layer_") and name.endswith("/ffn/linear_1/bias")
            )
            self.width = int(weights["encoder/conv1/bias"].shape[0])
        except KeyError as exc:
            raise ModelFilesError(f"{model} has no Whisper encoder weights ({exc} missing)") from exc
        if not self.layers:
            raise ModelFilesError(f"{model} has no Whisper encoder layers")
        self.weights, self.device = weights, device

    def _norm(self, x: Any, name: str) -> Any:
        import torch.nn.functional as F

        return F.layer_norm(x, (x.shape[-1],), self.weights[f"{name}/gamma"], self.weights[f"{name}/beta"], 1e-5)

    def _linear(self, x: Any, name: str) -> Any:
        import torch.nn.functional as F

        return F.linear(x, self.weights[f"{name}/weight"], self.weights[f"{name}/bias"])

    def hidden_states(self, mel: np.ndarray, num_samples: int) -> list[Any]:
        """Each layer's output (frames, width) for the turn's log-mel ``mel`` (n_mels, frames)."""
        layers, _ = self._forward([mel], [num_samples])
        return [h[0] for h in layers]

    def _forward(self, mels: list[np.ndarray], num_samples: list[int]) -> tuple[list[Any], list[int]]:
        """Each layer's output (batch, frames, width) for a batch of turns, padded to the longest;
        with the number of frames inside each turn. Padding is masked (zeroed before the second
        convolution, left out of attention), so a turn's frames are the same alone or in a batch."""
        import torch
        import torch.nn.functional as F

        w = self.weights
        cuts = [np.ascontiguousarray(m[:, : mel_frames(n)], dtype=np.float32) for m, n in zip(mels, num_samples)]
        lengths = [c.shape[1] for c in cuts]
        longest = max(lengths)
        frames = [(length + 1) // MEL_FRAMES_PER_FRAME for length in lengths]  # the second convolution's output lengths
        padded = any(length != longest for length in lengths)
        batch = np.zeros((len(cuts), cuts[0].shape[0], longest), dtype=np.float32)
        for i, c in enumerate(cuts):
            batch[i, :, : c.shape[1]] = c
        with torch.inference_mode():
            x = torch.from_numpy(batch).to(self.device)
            x = F.gelu(F.conv1d(x, w["encoder/conv1/weight"], w["encoder/conv1/bias"], padding=1))
            if padded:  # the second convolution reads one frame past a turn's end: zero, as when alone
                x = x * (
                    torch.arange(longest, device=self.device)[None, :]
                    < torch.tensor(lengths, device=self.device)[:, None]
                ).unsqueeze(1)
            x = F.gelu(F.conv1d(x, w["encoder/conv2/weight"], w["encoder/conv2/bias"], stride=2, padding=1))
            x = x.transpose(1, 2) + w["encoder/position_encodings/encodings"][: x.shape[2]]
            B, T, H, D = x.shape[0], x.shape[1], self.heads, self.width
            mask = None
            if padded:  # (B, 1, 1, T): True where a key is inside its turn
                mask = (
                    torch.arange(T, device=self.device)[None, :] < torch.tensor(frames, device=self.device)[:, None]
                )[:, None, None, :]
            out = []
            for i in range(self.layers):
                name = f"encoder/layer_{i}"
                q, k, v = (
                    t.view(B, T, H, D // H).transpose(1, 2)
                    for t in self._linear(
                        self._norm(x, f"{name}/self_attention/layer_norm"), f"{name}/self_attention/linear_0"
                    ).chunk(3, dim=-1)
                )
                attended = F.scaled_dot_product_attention(q, k, v, attn_mask=mask).transpose(1, 2).reshape(B, T, D)
                x = x + self._linear(attended, f"{name}/self_attention/linear_1")
                hidden = F.gelu(self._linear(self._norm(x, f"{name}/ffn/layer_norm"), f"{name}/ffn/linear_0"))
                x = x + self._linear(hidden, f"{name}/ffn/linear_1")
                out.append(x)
        return out, frames

    def statistics(self, mel: np.ndarray, num_samples: int) -> np.ndarray:
        """(layers, 2 * width) float32: the mean and standard deviation over time of each layer's output."""
        return self.statistics_many([mel], [num_samples])[0]

    def statistics_many(self, mels: list[np.ndarray], num_samples: list[int]) -> list[np.ndarray]:
        """:meth:`statistics` of several turns, the encoder run once on their padded batch."""
        import torch

        if not mels:
            return []
        layers, frames = self._forward(mels, num_samples)
        out = []
        for b, n in enumerate(frames):
            stats = [torch.cat([h[b, :n].mean(dim=0), h[b, :n].std(dim=0, unbiased=False)]) for h in layers]
            out.append(torch.stack(stats).float().cpu().numpy())
        return out

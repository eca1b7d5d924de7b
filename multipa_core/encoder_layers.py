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
from typing import Any, BinaryIO

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


def _read(handle: BinaryIO, prefix: str) -> dict[str, np.ndarray]:
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
    out: dict[str, np.ndarray] = {}
    for _ in range(number("I")):
        name = string()
        dims = [number("I") for _ in range(number("B"))]
        dtype, size = number("B"), number("I")
        if not name.startswith(prefix):
            handle.seek(size, 1)
            continue
        if dtype not in _DTYPES:
            raise ValueError(f"variable {name} has an unknown data type {dtype}")
        raw = handle.read(size)
        if len(raw) != size:
            raise ValueError("the file ends early")
        out[name] = np.frombuffer(raw, dtype=_DTYPES[dtype]).reshape(dims)
    return out


def mel_frames(num_samples: int) -> int:
    """Log-mel frames covering ``num_samples`` of 16 kHz audio, even, within one 30 s window."""
    return min(3000, MEL_FRAMES_PER_FRAME * max(1, math.ceil(num_samples / (SAMPLES_PER_MEL_FRAME * MEL_FRAMES_PER_FRAME))))


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
            self.layers = sum(1 for name in weights if name.startswith("encoder/layer_") and name.endswith("/ffn/linear_1/bias"))
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
        import torch
        import torch.nn.functional as F

        w = self.weights
        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(mel[:, : mel_frames(num_samples)], dtype=np.float32)).to(self.device)[None]
            x = F.gelu(F.conv1d(x, w["encoder/conv1/weight"], w["encoder/conv1/bias"], padding=1))
            x = F.gelu(F.conv1d(x, w["encoder/conv2/weight"], w["encoder/conv2/bias"], stride=2, padding=1))
            x = x.transpose(1, 2) + w["encoder/position_encodings/encodings"][: x.shape[2]]
            T, H, D = x.shape[1], self.heads, self.width
            out = []
            for i in range(self.layers):
                name = f"encoder/layer_{i}"
                q, k, v = (t.view(1, T, H, D // H).transpose(1, 2) for t in self._linear(self._norm(x, f"{name}/self_attention/layer_norm"), f"{name}/self_attention/linear_0").chunk(3, dim=-1))
                attended = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(1, T, D)
                x = x + self._linear(attended, f"{name}/self_attention/linear_1")
                hidden = F.gelu(self._linear(self._norm(x, f"{name}/ffn/layer_norm"), f"{name}/ffn/linear_0"))
                x = x + self._linear(hidden, f"{name}/ffn/linear_1")
                out.append(x[0])
        return out

    def statistics(self, mel: np.ndarray, num_samples: int) -> np.ndarray:
        """(layers, 2 * width) float32: the mean and standard deviation over time of each layer's output."""
        import torch

        stats = [torch.cat([h.mean(dim=0), h.std(dim=0, unbiased=False)]) for h in self.hidden_states(mel, num_samples)]
        return torch.stack(stats).float().cpu().numpy()

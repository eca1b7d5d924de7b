"""Phone posteriors and forced alignment (the role Charsiu plays in MultiPA).

:class:`PhoneNet` maps ASR_t's encoder frames (50 per second) to per-frame
log-posteriors over the 39 ARPAbet phones and a CTC blank; it is trained with
CTC on canonical phone sequences (``multipa train-aligner``).

:func:`viterbi` force-aligns any phone sequence to those posteriors with the CTC
topology (optional blanks between phones). CTC posteriors are peaky, so each
phone's Viterbi frames mark where it is, not how long it lasts; :func:`segment`
turns those spans into contiguous phone intervals by splitting the blank frames
between neighbours at the midpoint, except across a pause (more than
``max_gap`` blank frames between words), where each side keeps at most
``edge`` frames and the rest is silence.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from . import checkpoint_models, registry
from . import phones as ph

FRAME_SECONDS = 0.02


@dataclass(frozen=True)
class AlignerConfig:
    """Shape of the phone-posterior network."""

    input_dim: int = checkpoint_models.DEFAULT_FRAME_DIM  # ASR_t's encoder frame size (Whisper base: 512)
    channels: int = 256  # width of the convolutional stack
    kernel: int = 5  # frames seen by each convolution (100 ms)
    layers: int = 3  # residual convolution layers (receptive field 260 ms)
    dropout: float = 0.1  # after each layer, in training


def build_net(config: AlignerConfig) -> Any:
    """A PhoneNet module (imported lazily: torch is heavy).

    The Whisper encoder frames are already contextual (self-attention over the
    whole 30 s window), so a small residual convolution stack suffices; it
    trains about six times faster on a CPU than a BiLSTM of the same width.
    """
    import torch
    from torch import nn

    class PhoneNet(nn.Module):
        def __init__(self, cfg: AlignerConfig) -> None:
            super().__init__()
            self.norm = nn.LayerNorm(cfg.input_dim)
            self.inp = nn.Linear(cfg.input_dim, cfg.channels)
            self.convs = nn.ModuleList(
                nn.Conv1d(cfg.channels, cfg.channels, cfg.kernel, padding=cfg.kernel // 2) for _ in range(cfg.layers)
            )
            self.drop = nn.Dropout(cfg.dropout)
            self.out = nn.Linear(cfg.channels, ph.NUM_CLASSES)

        def forward(self, frames: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
            # Padding is zeroed after every layer, so a turn scores the same alone or in a batch.
            mask = (
                (torch.arange(frames.shape[1], device=frames.device)[None, :] < lengths.to(frames.device)[:, None])
                .unsqueeze(1)
                .float()
            )
            h = self.inp(self.norm(frames)).transpose(1, 2) * mask
            for conv in self.convs:
                h = (h + self.drop(nn.functional.gelu(conv(h)))) * mask
            return torch.log_softmax(self.out(h.transpose(1, 2)), dim=-1)

    return PhoneNet(config)


# --- alignment results ------------------------------------------------------------


@dataclass
class PhoneSegment:
    """One aligned phone."""

    phone: str  # ARPAbet with stress digit
    start: float  # seconds
    end: float  # seconds
    probability: float  # the network's highest posterior for this phone inside its interval
    word: int  # index of its word


@dataclass
class WordSegment:
    """One aligned word."""

    text: str
    start: float
    end: float
    phones: list[int] = field(default_factory=list)  # indices into Alignment.phones


@dataclass
class Alignment:
    """A transcript force-aligned to a turn."""

    words: list[WordSegment]
    phones: list[PhoneSegment]
    posteriors: np.ndarray  # (len(phones), NUM_CLASSES): mean posterior over each phone's Viterbi frames
    duration: float  # seconds of audio covered by the frames

    def to_dict(self) -> dict[str, Any]:
        return {
            "words": [
                {
                    "text": w.text,
                    "start": round(w.start, 3),
                    "end": round(w.end, 3),
                    "phones": [
                        {
                            "phone": self.phones[i].phone,
                            "start": round(self.phones[i].start, 3),
                            "end": round(self.phones[i].end, 3),
                            "probability": round(self.phones[i].probability, 4),
                        }
                        for i in w.phones
                    ],
                }
                for w in self.words
            ]
        }


# --- Viterbi over the CTC topology ------------------------------------------------


def viterbi(log_probs: np.ndarray, tokens: list[int]) -> list[tuple[int, int]] | None:
    """Best CTC path of ``tokens`` through ``log_probs`` (frames, classes).

    Returns:
        For each token, the (first, last) frame of its span, or None when the
        sequence cannot fit in the frames (too many phones for the audio).
    """
    T = log_probs.shape[0]
    n = len(tokens)
    if n == 0:
        return []
    ext = np.full(2 * n + 1, ph.BLANK, dtype=np.int64)
    ext[1::2] = tokens
    S = ext.size
    repeats = sum(1 for a, b in zip(tokens, tokens[1:]) if a == b)
    if T < n + repeats:
        return None
    # skip[s]: state s may be entered from s - 2 (a token differing from the previous token)
    skip = np.zeros(S, dtype=bool)
    skip[3::2] = ext[3::2] != ext[1:-2:2]
    emit = log_probs[:, ext]  # (T, S)
    neg = -np.inf
    score = np.full(S, neg)
    score[0] = emit[0, 0]
    score[1] = emit[0, 1]
    back = np.zeros((T, S), dtype=np.int8)  # 0 stay, 1 from s-1, 2 from s-2
    for t in range(1, T):
        prev1 = np.concatenate(([neg], score[:-1]))
        prev2 = np.where(skip, np.concatenate(([neg, neg], score[:-2])), neg)
        stacked = np.stack([score, prev1, prev2])
        choice = np.argmax(stacked, axis=0)
        score = stacked[choice, np.arange(S)] + emit[t]
        back[t] = choice
    s = S - 1 if S == 1 or score[S - 1] >= score[S - 2] else S - 2
    if not np.isfinite(score[s]):
        return None
    states = np.empty(T, dtype=np.int64)
    for t in range(T - 1, -1, -1):
        states[t] = s
        s -= int(back[t, s])
    spans: list[tuple[int, int]] = []
    for k in range(n):
        frames = np.flatnonzero(states == 2 * k + 1)
        spans.append((int(frames[0]), int(frames[-1])))
    return spans


def segment(
    spans: list[tuple[int, int]], word_of: list[int], num_frames: int, *, max_gap: int = 10, edge: int = 4
) -> list[tuple[int, int]]:
    """Contiguous [start, end) frame intervals from Viterbi spans (see the module docstring)."""
    n = len(spans)
    bounds = [[a, b + 1] for a, b in spans]
    bounds[0][0] = max(0, spans[0][0] - edge)
    bounds[-1][1] = min(num_frames, spans[-1][1] + 1 + edge)
    for i in range(n - 1):
        gap_start, gap_end = spans[i][1] + 1, spans[i + 1][0]
        gap = gap_end - gap_start
        if word_of[i] == word_of[i + 1] or gap <= max_gap:
            cut = gap_start + gap // 2
            bounds[i][1], bounds[i + 1][0] = cut, cut
        else:
            bounds[i][1] = gap_start + edge
            bounds[i + 1][0] = gap_end - edge
    return [(a, b) for a, b in bounds]


def uniform_spans(n: int, num_frames: int) -> list[tuple[float, float]]:
    """Fallback when the phones cannot fit the frames: equal shares of the turn."""
    step = num_frames / n
    return [(i * step, (i + 1) * step) for i in range(n)]


def force_align(log_probs: np.ndarray, words: list[str], word_phones: list[list[str]], **kwargs: int) -> Alignment:
    """Align words (with their phones) to per-frame log-posteriors.

    Words without phones are skipped. Every phone must satisfy ``phones.is_known``.
    """
    kept = [(w, p) for w, p in zip(words, word_phones) if p]
    flat = [p for _, ps in kept for p in ps]
    word_of = [i for i, (_, ps) in enumerate(kept) for _ in ps]
    T = log_probs.shape[0]
    probs = np.exp(log_probs)
    if not flat:
        return Alignment([], [], np.zeros((0, ph.NUM_CLASSES), np.float32), T * FRAME_SECONDS)
    tokens = ph.to_classes(flat)
    spans = viterbi(log_probs, tokens)
    segments: list[PhoneSegment] = []
    posts = np.zeros((len(flat), ph.NUM_CLASSES), dtype=np.float32)
    if spans is None:
        intervals: list[tuple[float, float]] = uniform_spans(len(flat), T)
        peak = [(min(T - 1, int(a)), min(T - 1, int(a))) for a, _ in intervals]
    else:
        intervals = [(float(a), float(b)) for a, b in segment(spans, word_of, T, **kwargs)]
        peak = spans
    for i, (phone, (a, b), (pa, pb)) in enumerate(zip(flat, intervals, peak)):
        lo, hi = int(a), max(int(a) + 1, int(np.ceil(b)))
        prob = float(probs[lo:hi, tokens[i]].max())
        posts[i] = probs[pa : pb + 1].mean(axis=0)
        segments.append(PhoneSegment(phone, a * FRAME_SECONDS, b * FRAME_SECONDS, prob, word_of[i]))
    out_words: list[WordSegment] = []
    for wi, (text, _) in enumerate(kept):
        idx = [i for i, w in enumerate(word_of) if w == wi]
        out_words.append(WordSegment(text, segments[idx[0]].start, segments[idx[-1]].end, idx))
    return Alignment(out_words, segments, posts, T * FRAME_SECONDS)


def greedy_decode(log_probs: np.ndarray, *, blank_penalty: float = 0.0) -> list[str]:
    """Free (unconstrained) CTC decoding: best class per frame, repeats merged, blanks dropped.

    ``blank_penalty`` is taken off the blank's log posterior first (more phones come out).
    """
    if blank_penalty:
        log_probs = log_probs.copy()
        log_probs[:, ph.BLANK] -= blank_penalty
    best = log_probs.argmax(axis=1)
    out: list[str] = []
    prev = -1
    for c in best:
        if c != prev and c != ph.BLANK:
            out.append(ph.PHONES[c - 1])
        prev = c
    return out


# --- the trained aligner ----------------------------------------------------------


class Aligner:
    """The trained phone-posterior network, loaded once.

    Args:
        checkpoint: a registry name (``multipa-aligner``) or a checkpoint path.
        device: ``cpu`` or ``cuda``.
    """

    def __init__(self, checkpoint: str = "multipa-aligner", *, device: str = "cpu") -> None:
        import torch

        path = registry.resolve(checkpoint, kind="aligner")
        state = torch.load(path, map_location="cpu", weights_only=True)
        self.config = AlignerConfig(**state["config"])
        self.asr = checkpoint_models.recorded(state, path)  # the ASR_t whose frames it was trained on
        self.net = build_net(self.config)
        self.net.load_state_dict({k: v.float() for k, v in state["state_dict"].items()})
        self.net.eval().to(device)
        self.device = device
        self._torch = torch

    def log_posteriors(self, frames: np.ndarray) -> np.ndarray:
        """(frames, NUM_CLASSES) float32 log-posteriors for one turn's encoder frames."""
        torch = self._torch
        with torch.inference_mode():
            x = torch.from_numpy(np.asarray(frames, dtype=np.float32))[None].to(self.device)
            out = self.net(x, torch.tensor([x.shape[1]]))
        return out[0].float().cpu().numpy()

    def align(self, log_probs: np.ndarray, words: list[str], word_phones: list[list[str]]) -> Alignment:
        return force_align(log_probs, words, word_phones)


def save_checkpoint(
    path: str,
    net: Any,
    config: AlignerConfig,
    metrics: dict[str, Any],
    *,
    asr: checkpoint_models.AsrModels | None = None,
) -> None:
    """Write a compact (float16) checkpoint, with the ASR_t model it was trained on (``asr``;
    None: not recorded, read as the defaults)."""
    import torch

    state: dict[str, Any] = {
        "config": asdict(config),
        "state_dict": {k: v.detach().cpu().half() for k, v in net.state_dict().items()},
        "metrics": metrics,
    }
    if asr is not None:
        state["asr"] = asr.to_dict()
    torch.save(state, path)

"""The MultiPA scoring network.

Inputs are the batched arrays of :func:`multipa_core.features.collate`. Each
target word becomes one token: the acoustic embedding pooled over the word's
frames, the text embeddings of the word and of its recognized partner, the
word-alignment features, the phone features pooled over the word's phones, and
the bag of its phone vectors. A learned utterance token carries statistics of the
whole turn (the mean and spread of the acoustic frames, as in the "vanilla SSL"
probe, and attention-pooled frames). A transformer encoder fuses the tokens;
linear heads read the utterance token for the sentence scores (accuracy,
fluency, prosody, total) and convolutional heads read the word tokens for the
word scores (accuracy, stress, total). Pooling is done with masked matrix
products, so the forward pass has no per-item Python loop.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from . import phones as ph
from .checkpoint_models import DEFAULT_FRAME_DIM
from .aspects import SENTENCE_NAMES, WORD_NAMES
from .features import PHONE_SCALARS, PHONE_VECTOR, WORD_SCALARS

SENTENCE_HEADS = SENTENCE_NAMES  # the sentence heads, in output order
WORD_HEADS = WORD_NAMES  # the word heads, in output order


@dataclass(frozen=True)
class ScorerConfig:
    """Shape of the scoring network."""

    acoustic_dim: int = DEFAULT_FRAME_DIM  # ASR_t's encoder frame size (Whisper base: 512)
    text_dim: int = 384  # text embedding size
    d_model: int = 128  # token width
    layers: int = 2  # transformer encoder layers
    heads: int = 4  # attention heads
    dropout: float = 0.3  # everywhere in training
    word_kernel: int = 3  # width of the convolutional word heads
    ablate: tuple[str, ...] = ()  # input groups zeroed, for ablations: see ABLATIONS


# Input groups that an ablation can remove (replaced by zeros, same shapes).
ABLATIONS = ("acoustic", "phones", "text", "alignment", "utterance")


def build_scorer(config: ScorerConfig) -> Any:
    """A MultiPA module (torch imported lazily)."""
    import torch
    from torch import nn

    def masked_mean(values: torch.Tensor, assign: torch.Tensor) -> torch.Tensor:
        # assign: (B, N, T) 0/1 membership of T items in N groups; values: (B, T, D)
        counts = assign.sum(-1, keepdim=True).clamp(min=1.0)
        return torch.bmm(assign, values) / counts

    def spans_to_assign(spans: torch.Tensor, length: int) -> torch.Tensor:
        # spans: (B, N, 2) [start, end) -> (B, N, length) float membership
        idx = torch.arange(length, device=spans.device)[None, None, :]
        return ((idx >= spans[..., :1]) & (idx < spans[..., 1:2])).float()

    class MultiPA(nn.Module):
        def __init__(self, cfg: ScorerConfig) -> None:
            super().__init__()
            d = cfg.d_model
            self.cfg = cfg
            self.frame_norm = nn.LayerNorm(cfg.acoustic_dim)
            self.frame_proj = nn.Sequential(nn.Linear(cfg.acoustic_dim, d), nn.GELU(), nn.Dropout(cfg.dropout))
            self.phone_proj = nn.Sequential(
                nn.Linear(ph.NUM_CLASSES + PHONE_VECTOR + len(PHONE_SCALARS), d), nn.GELU(), nn.Dropout(cfg.dropout)
            )
            self.text_proj = nn.Linear(cfg.text_dim, d)
            self.other_proj = nn.Linear(cfg.text_dim, d)
            word_in = d + d + d + d + len(WORD_SCALARS) + PHONE_VECTOR
            self.word_proj = nn.Sequential(
                nn.LayerNorm(word_in), nn.Linear(word_in, d), nn.GELU(), nn.Dropout(cfg.dropout)
            )
            self.attn_pool = nn.Linear(d, 1)
            self.utt_proj = nn.Sequential(nn.Linear(2 * cfg.acoustic_dim + d, d), nn.GELU(), nn.Dropout(cfg.dropout))
            layer = nn.TransformerEncoderLayer(d, cfg.heads, 2 * d, cfg.dropout, batch_first=True, norm_first=True)
            self.encoder = nn.TransformerEncoder(layer, cfg.layers, enable_nested_tensor=False)
            self.sentence_head = nn.Linear(2 * d, len(SENTENCE_HEADS))
            self.word_head = nn.Sequential(
                nn.Conv1d(d, d, cfg.word_kernel, padding=cfg.word_kernel // 2),
                nn.GELU(),
                nn.Conv1d(d, len(WORD_HEADS), 1),
            )

        def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
            frames, fmask = batch["frames"].float(), batch["frame_mask"]
            wmask, pmask = batch["word_mask"], batch["phone_mask"]
            B, T, _ = frames.shape
            fm = fmask.unsqueeze(-1).float()
            n = fm.sum(1).clamp(min=1.0)
            mean = (frames * fm).sum(1) / n
            std = (((frames - mean[:, None]) ** 2 * fm).sum(1) / n).sqrt()
            h = self.frame_proj(self.frame_norm(frames))  # (B, T, d)
            # acoustic per word
            w_assign = spans_to_assign(batch["word_frames"], T) * fmask[:, None, :].float()
            w_acoustic = masked_mean(h, w_assign)
            # phone features per word
            phone_in = torch.cat([batch["phone_post"], batch["phone_onehot"], batch["phone_scalars"]], -1).float()
            p = self.phone_proj(phone_in)
            W = wmask.shape[1]
            p_assign = (batch["phone_word"][:, None, :] == torch.arange(W, device=p.device)[None, :, None]).float()
            p_assign = p_assign * pmask[:, None, :].float()
            w_phone = masked_mean(p, p_assign)
            groups = {
                "acoustic": [w_acoustic],
                "phones": [w_phone, batch["word_phones"].float()],
                # an ablated group is zeros; ablated text is not even read (its features may be zero-width)
                "text": [self.text_proj(batch["word_text"].float()), self.other_proj(batch["word_text_other"].float())]
                if "text" not in self.cfg.ablate
                else [torch.zeros_like(w_acoustic)] * 2,
                "alignment": [batch["word_scalars"].float()],
            }
            parts = [torch.zeros_like(t) if name in self.cfg.ablate else t for name, ts in groups.items() for t in ts]
            words = torch.cat(parts, -1)
            words = self.word_proj(words)
            # utterance token: frame statistics and attention-pooled frames
            scores = self.attn_pool(h).squeeze(-1).masked_fill(~fmask, float("-inf"))
            pooled = torch.bmm(torch.softmax(scores, -1).unsqueeze(1), h).squeeze(1)
            stats = torch.cat([mean, std, pooled], -1)
            if "utterance" in self.cfg.ablate:
                stats = torch.zeros_like(stats)
            utt = self.utt_proj(stats).unsqueeze(1)
            tokens = torch.cat([utt, words], 1)
            pad = torch.cat([torch.zeros(B, 1, dtype=torch.bool, device=wmask.device), ~wmask], 1)
            out = self.encoder(tokens, src_key_padding_mask=pad)
            out = out.masked_fill(pad.unsqueeze(-1), 0.0)
            word_out = out[:, 1:]
            word_mean = word_out.sum(1) / wmask.sum(1, keepdim=True).clamp(min=1).float()
            sentence = self.sentence_head(torch.cat([out[:, 0], word_mean], -1))
            word = self.word_head(word_out.transpose(1, 2)).transpose(1, 2)
            return {"sentence": sentence, "word": word * wmask.unsqueeze(-1).float()}

    return MultiPA(config)

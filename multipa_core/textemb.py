"""Text embeddings of words in context (the paper's RoBERTa role).

The default is all-MiniLM-L6-v2 (384-d), loaded with transformers straight from
the installed package (importing sentence-transformers would cost seconds). Any
transformers encoder directory (RoBERTa base, for instance) works the same way:
the transcript is tokenised as a sequence of words, and each word's vector is the
mean of its sub-word token vectors from the last layer.
"""

from __future__ import annotations

import numpy as np

from . import registry

NO_TEXT = "none"  # the text model of a scorer that does not read text embeddings


def text_embedder(model: str, *, device: str = "cpu") -> "TextEmbedder | NoText":
    """The embedder for ``model``; :data:`NO_TEXT` loads nothing."""
    return NoText() if model == NO_TEXT else TextEmbedder(model, device=device)


class NoText:
    """Zero-width word vectors, for scorers trained without text embeddings: the
    text model is neither loaded nor run."""

    dim = 0

    def __call__(self, words: list[str]) -> np.ndarray:
        return self.many([words])[0]

    def many(self, sequences: list[list[str]]) -> list[np.ndarray]:
        return [np.zeros((len(words), 0), dtype=np.float32) for words in sequences]


class TextEmbedder:
    """Per-word contextual vectors for a list of words.

    Args:
        model: a registry name (``minilm-l6``) or a transformers model directory.
        device: ``cpu`` or ``cuda``.
    """

    def __init__(self, model: str = "minilm-l6", *, device: str = "cpu") -> None:
        import torch
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # a bar per model load is noise in a server log

        path = registry.resolve(model, kind="text")
        # RoBERTa-style BPE tokenizers need add_prefix_space for pre-split words.
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True, add_prefix_space=True)
        except (TypeError, ValueError):
            self.tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        self.model = AutoModel.from_pretrained(str(path), local_files_only=True).eval().to(device)
        self.device = device
        self.dim = int(self.model.config.hidden_size)
        self._torch = torch

    def __call__(self, words: list[str]) -> np.ndarray:
        """(len(words), dim) float32; an empty list gives (0, dim)."""
        return self.many([words])[0]

    def many(self, sequences: list[list[str]]) -> list[np.ndarray]:
        """Per-word vectors of several word sequences, in one padded forward pass."""
        out = [np.zeros((0, self.dim), dtype=np.float32) for _ in sequences]
        busy = [i for i, words in enumerate(sequences) if words]
        if not busy:
            return out
        torch = self._torch
        batch = [sequences[i] for i in busy]
        encoded = self.tokenizer(
            batch, is_split_into_words=True, return_tensors="pt", truncation=True, max_length=512, padding=True
        )
        with torch.inference_mode():
            hidden = self.model(**{k: v.to(self.device) for k, v in encoded.items()}).last_hidden_state.float().cpu()
        for row, i in enumerate(busy):
            out[i] = _mean_per_word(hidden[row], encoded.word_ids(row), len(sequences[i]), torch)
        return out


def _mean_per_word(hidden, word_ids: list[int | None], count: int, torch) -> np.ndarray:
    """Average the token vectors of each word (special and padding tokens have no word)."""
    index = torch.tensor([-1 if w is None else w for w in word_ids])
    out = torch.zeros(count, hidden.shape[-1])
    counts = torch.zeros(count, 1)
    keep = index >= 0
    out.index_add_(0, index[keep], hidden[keep])
    counts.index_add_(0, index[keep], torch.ones(int(keep.sum()), 1))
    return (out / counts.clamp(min=1)).numpy().astype(np.float32)

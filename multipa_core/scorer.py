"""The trained MultiPA scorer: load once, score batches of turns.

The checkpoint holds the networks (an ensemble whose outputs are averaged),
optionally a ridge probe on the frame statistics blended into the sentence
scores with per-aspect weights chosen on validation speakers, the aligner and text model its features were
made with, the needs-improvement thresholds (the paper's rule: mean minus one
standard deviation of the training word scores), the lowest training scores
(what a failed utterance is scored with in evaluation) and the ASR models it was
trained with (:mod:`multipa_core.checkpoint_models`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from . import checkpoint_models, registry
from .features import TurnFeatures, collate
from .model import SENTENCE_HEADS, WORD_HEADS, ScorerConfig, build_scorer
from .probe import Ridge, reads_layers
from .textemb import NO_TEXT
from .word_model import WordModel, with_network, word_inputs

SCALE = 10.0  # scores live on 0..10; the network works on 0..1


@dataclass
class Scores:
    """Scores of one turn on the 0..10 scale."""

    sentence: dict[str, float]  # accuracy, fluency, prosody, total
    words: list[dict[str, float]]  # per target word: accuracy, stress, total


class Scorer:
    """The scoring network (an ensemble of one or more), loaded once.

    Args:
        checkpoint: a registry name (``multipa-scorer``) or a checkpoint path.
        device: ``cpu`` or ``cuda``.
    """

    def __init__(self, checkpoint: str = "multipa-scorer", *, device: str = "cpu") -> None:
        import torch

        path = registry.resolve(checkpoint, kind="scorer")
        state = torch.load(path, map_location="cpu", weights_only=False)
        self.config = ScorerConfig(**state["config"])
        self.nets = []
        for weights in state["members"]:
            net = build_scorer(self.config)
            net.load_state_dict({k: v.float() for k, v in weights.items()})
            self.nets.append(net.eval().to(device))
        self.device = device
        self.thresholds: dict[str, float] = state["thresholds"]
        self.floor: dict[str, float] = state["floor"]
        self.aligner: str = state.get("aligner", "multipa-aligner")
        # a network trained without text embeddings does not need them computed at all
        self.text_model: str = NO_TEXT if "text" in self.config.ablate else state.get("text_model", "minilm-l6")
        self.metadata: dict[str, Any] = state.get("metadata", {})
        self.asr = checkpoint_models.recorded(state, path)  # the ASR models it was trained with
        blend = state.get("probe")
        ridge: dict[str, Any] = (
            {k: v if k in ("alpha", "inputs") else np.asarray(v) for k, v in blend["ridge"].items()} if blend else {}
        )
        self.probe = Ridge(**ridge) if blend else None
        self.probe_weight = np.asarray(blend["weight"], dtype=np.float64) if blend else None
        stage = state.get("word_model") or {}
        # the word stage (multipa_core.word_model): fitted on every fold's held-out predictions, and
        # once per fold without that fold's speakers (for the cross-validated evaluation)
        self.word_model: WordModel | None = WordModel.from_state(stage["all"]) if stage else None
        self.fold_word_models: dict[int, WordModel] = {
            int(k): WordModel.from_state(v) for k, v in stage.get("folds", {}).items()
        }
        self._torch = torch

    @property
    def encoder_layers(self) -> bool:
        """Whether turns need the statistics of ASR_t's encoder layers (read by the probe only)."""
        return self.probe is not None and reads_layers(self.probe.inputs)

    def score(self, items: list[TurnFeatures]) -> list[Scores]:
        """Score a batch of turns (one forward pass)."""
        return self.score_with_inputs(items)[0]

    def score_with_inputs(self, items: list[TurnFeatures]) -> tuple[list[Scores], list[np.ndarray]]:
        """Score a batch of turns, and give each turn's word-stage input rows (from the
        networks' mean outputs, whether or not the checkpoint has a word stage).

        The word stage was fitted on single networks' held-out outputs, so with a bag it
        corrects each network's word scores on their own and the corrections are averaged:
        each network's outputs look like what the stage was fitted on."""
        if not items:
            return [], []
        torch = self._torch
        batch = {k: v.to(self.device) for k, v in collate(items).items()}
        with torch.inference_mode():
            outs = [net(batch) for net in self.nets]
        stacked_sentence, stacked_words = (
            torch.stack([o["sentence"] for o in outs]),
            torch.stack([o["word"] for o in outs]),
        )
        sentence = stacked_sentence.mean(0).float().cpu().numpy() * SCALE
        net_sentence = sentence.clip(0, SCALE)
        if self.probe is not None and self.probe_weight is not None:  # the two come together
            sentence = (1.0 - self.probe_weight) * sentence + self.probe_weight * self.probe.predict_turns(items)
        sentence = sentence.clip(0, SCALE)
        words = (stacked_words.mean(0).float().cpu().numpy() * SCALE).clip(0, SCALE)
        each_sentence = (stacked_sentence.float().cpu().numpy() * SCALE).clip(0, SCALE)  # per network, for the stage
        each_words = (stacked_words.float().cpu().numpy() * SCALE).clip(0, SCALE)
        results, inputs = [], []
        for b, item in enumerate(items):
            n = item.word_text.shape[0]
            rows = word_inputs(item, net_sentence[b], words[b, :n])
            inputs.append(rows)
            if self.word_model is not None and n:
                stage = self.word_model
                words[b, :n] = np.mean(
                    [stage.predict(with_network(rows, s[b], w[b, :n])) for s, w in zip(each_sentence, each_words)],
                    axis=0,
                )
            results.append(
                Scores(
                    sentence={h: float(sentence[b, i]) for i, h in enumerate(SENTENCE_HEADS)},
                    words=[{h: float(words[b, w, i]) for i, h in enumerate(WORD_HEADS)} for w in range(n)],
                )
            )
        return results, inputs


def save_scorer(
    path: str,
    nets: list[Any],
    config: ScorerConfig,
    *,
    thresholds: dict[str, float],
    floor: dict[str, float],
    aligner: str,
    text_model: str,
    metadata: dict[str, Any],
    probe: tuple[Ridge, list[float]] | None = None,
    asr: checkpoint_models.AsrModels | None = None,
    word_model: dict[str, Any] | None = None,
) -> None:
    """Write a scorer checkpoint: one or more networks (their outputs are averaged), float16 weights,
    and the ASR models it was trained with (``asr``; None: not recorded, read as the defaults)."""
    import torch

    members = [{k: v.detach().cpu().half() for k, v in net.state_dict().items()} for net in nets]
    state: dict[str, Any] = {
        "config": asdict(config),
        "members": members,
        "thresholds": thresholds,
        "floor": floor,
        "aligner": aligner,
        "text_model": text_model,
        "metadata": metadata,
        "probe": None if probe is None else {"ridge": asdict(probe[0]), "weight": list(probe[1])},
    }
    if asr is not None:
        state["asr"] = asr.to_dict()
    if word_model:
        state["word_model"] = word_model
    torch.save(state, path)


def needs_improvement(word: dict[str, float], thresholds: dict[str, float]) -> bool:
    """The paper's rule: a word needs work when its accuracy or total is below mean - 1 sd."""
    return any(word[a] < thresholds[a] for a in ("accuracy", "total") if a in thresholds)


def word_label_stats(word_labels: np.ndarray) -> dict[str, dict[str, float]]:
    """Mean and standard deviation of each word aspect over training words (the thresholds' basis)."""
    return {
        a: {"mean": float(np.nanmean(word_labels[:, i])), "std": float(np.nanstd(word_labels[:, i]))}
        for i, a in enumerate(WORD_HEADS)
    }


def thresholds_from_stats(stats: dict[str, dict[str, float]], k: float = 1.0) -> dict[str, float]:
    """Mean minus ``k`` standard deviations of each word aspect."""
    return {a: s["mean"] - k * s["std"] for a, s in stats.items()}


def training_thresholds(word_labels: np.ndarray, k: float = 1.0) -> dict[str, float]:
    """Mean minus ``k`` standard deviations of each word aspect over training words (the paper: k = 1)."""
    return thresholds_from_stats(word_label_stats(word_labels), k)


def set_needs_improvement_rule(path: str, k: float) -> dict[str, float]:
    """Rewrite a checkpoint's needs-improvement thresholds as mean - ``k`` sd of its
    training word scores (kept in the checkpoint) and return them; the networks are
    untouched. The flag is a decision rule, not part of the training: a deployment
    can trade recall for precision without retraining.

    Raises:
        ModelFilesError: the checkpoint does not record its training word statistics.
    """
    import torch

    from .errors import ModelFilesError

    state = torch.load(path, map_location="cpu", weights_only=False)
    stats = state.get("metadata", {}).get("word_label_stats")
    if not stats:
        raise ModelFilesError(
            f"{path} does not record its training word statistics; retrain it with multipa train --needs-improvement-k"
        )
    state["thresholds"] = thresholds_from_stats(stats, k)
    state["metadata"]["needs_improvement_k"] = k
    torch.save(state, path)
    return state["thresholds"]

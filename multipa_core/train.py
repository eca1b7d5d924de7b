"""``multipa train``: fit the MultiPA scorer.

Every speaker of the data folder trains, except the speakers of a held-out
cross-validation fold (``holdout_fold``, :mod:`multipa_core.crossval`), which are
never read; a few of the training speakers (:func:`multipa_core.data.training_parts`)
stop the networks early and choose the probe's blend. As in the paper, the target transcript in
training is the reference text (the word labels belong to it), and at inference
ASR_t stands in; by default each utterance is also seen as open mode sees it,
with ASR_t's transcript as the target and each of its words labelled with the
reference words it overlaps in time (``transcripts="both"``). A run saves its
state after every epoch and resumes from it when started again with the same
configuration. The checkpoint records the Whisper models it was trained with
(:mod:`multipa_core.checkpoint_models`); the network's frame size is ASR_t's.
"""

from __future__ import annotations

import json
import logging
import math
import random
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from . import checkpoint_models, data, settings
from .aspects import SENTENCE_NAMES, WORD_NAMES
from .dataset import Example, closed_examples, open_examples
from .features import collate
from .model import ScorerConfig, build_scorer
from .probe import reads_layers
from .scorer import SCALE, save_scorer, training_thresholds, word_label_stats

log = logging.getLogger(__name__)


# Target transcripts a scorer can be trained on: the reference text (its words
# carry the labels), ASR_t's transcript (labels carried over by time overlap, as
# open mode sees a turn), or both (each utterance twice).
TRANSCRIPTS = ("reference", "asr", "both")


@dataclass(frozen=True)
class TrainConfig:
    """Options of one scorer training run."""

    data: str  # data folder (speechocean762 layout)
    out: str  # checkpoint path to write (a .json report goes beside it)
    cache: str = ""  # feature cache root ("" = the default cache directory)
    aligner: str = "multipa-aligner"  # aligner the features are made with
    text_model: str = "minilm-l6"  # text embedding model
    epochs: int = 80  # upper bound; early stopping usually ends sooner
    patience: int = 5  # epochs without validation improvement before stopping
    batch_size: int = 32  # utterances per step
    lr: float = 5e-4  # AdamW learning rate
    weight_decay: float = 0.1  # AdamW weight decay
    word_weight: float = 1.0  # weight of the word loss beside the sentence loss
    seed: int = 762  # python, numpy and torch seeds (member i uses seed + i)
    members: int = 3  # networks trained with different seeds and averaged (an ensemble)
    blend_probe: bool = True  # blend a ridge probe on frame statistics into the sentence scores
    probe_inputs: str = "encoder-layers"  # what the blended probe reads (multipa_core.probe.INPUTS)
    limit: int = 0  # first N training utterances only (0 = all); for smoke runs
    transcripts: str = (
        "both"  # target transcripts in training: reference (the paper), asr (ASR_t, labels by overlap) or both
    )
    holdout_fold: int = -1  # cross-validation fold whose speakers are never read (-1: none; every speaker trains)
    folds: str = ""  # folds file ("" = multipa_core/splits/speechocean762-folds.json)
    validation_speakers: int = 10  # training speakers set aside to stop training early and fit the blend
    needs_improvement_k: float = (
        1.0  # a word needs work below mean - k sd of the training word scores (accuracy or total)
    )
    net: ScorerConfig = field(
        default_factory=lambda: ScorerConfig(ablate=("text",))
    )  # network shape; the shipped scorer reads no text embeddings (its acoustic_dim becomes ASR_t's frame size)
    asr_target: str = checkpoint_models.DEFAULT_TARGET  # ASR_t: Whisper registry name or CTranslate2 directory
    asr_recognized: str = checkpoint_models.DEFAULT_RECOGNIZED  # ASR_r: Whisper registry name or CTranslate2 directory


def for_asr(config: TrainConfig) -> TrainConfig:
    """The recipe with its network's frame size set to ASR_t's (the frames it will read).

    Raises:
        UnknownModelError, ModelFilesError: ASR_t is not a Whisper model here.
    """
    dim = checkpoint_models.describe(config.asr_target).frame_dim
    return config if dim == config.net.acoustic_dim else replace(config, net=replace(config.net, acoustic_dim=dim))


def _targets(batch: list[Example]) -> tuple[Any, Any, Any]:
    import torch

    sentence = torch.from_numpy(np.stack([e.sentence for e in batch]) / SCALE).float()
    W = max(1, max(len(e.words) for e in batch))
    words = torch.zeros(len(batch), W, len(WORD_NAMES))
    known = torch.zeros(len(batch), W, len(WORD_NAMES), dtype=torch.bool)
    for i, e in enumerate(batch):
        labels = torch.from_numpy(e.words / SCALE).float()
        words[i, : len(e.words)] = torch.nan_to_num(labels)
        known[i, : len(e.words)] = ~torch.isnan(labels)
    return sentence, words, known


def batch_loss(net: Any, batch: list[Example], word_weight: float) -> tuple[Any, float, float]:
    """Mean squared error of the sentence and (known) word scores, on the 0..1 scale."""
    import torch

    out = net(collate([e.features for e in batch]))
    sentence, words, known = _targets(batch)
    s_loss = torch.mean((out["sentence"] - sentence) ** 2)
    w_loss = ((out["word"] - words) ** 2 * known).sum() / known.sum().clamp(min=1)
    return s_loss + word_weight * w_loss, s_loss.item(), w_loss.item()


def _batches(items: list[Example], size: int, rng: random.Random | None) -> list[list[Example]]:
    order = list(items)
    if rng is not None:
        rng.shuffle(order)
    return [order[i : i + size] for i in range(0, len(order), size)]


def prepare(config: TrainConfig) -> tuple[list[Example], list[Example], list[str]]:
    """Training and validation examples (features cached), and the utterances skipped."""
    from .pipeline import FeatureBuilder
    from .precompute import precompute

    cache_root = config.cache or str(settings.cache_dir() / "features")
    utterances = data.load_utterances(config.data)
    parts = speaker_parts(config, utterances)
    train_utts = [u for u in utterances if u.speaker in set(parts["train"])]
    val_utts = [u for u in utterances if u.speaker in set(parts["validation"])]
    if config.limit:
        train_utts, val_utts = train_utts[: config.limit], val_utts[: max(2, config.limit // 4)]
    if config.transcripts not in TRANSCRIPTS:
        raise ValueError(f"transcripts must be one of {', '.join(TRANSCRIPTS)}, not {config.transcripts!r}")
    asr = config.transcripts != "reference"
    layers = config.blend_probe and reads_layers(config.probe_inputs)
    builder = FeatureBuilder(aligner=config.aligner, text_model=training_text_model(config))
    # the aligner reads ASR_t's frames: one trained on another model's would fail, or align wrongly
    checkpoint_models.check_same(
        "target", builder.aligner.asr.target, checkpoint_models.describe(config.asr_target), checkpoint=config.aligner
    )
    pre = precompute(
        train_utts + val_utts,
        None,
        cache_root,
        recognized=True,
        target=asr,
        layers=layers,
        desc="ASR train+validation",
        target_model=config.asr_target,
        recognized_model=config.asr_recognized,
    )
    train_ex: list[Example] = []
    val_ex: list[Example] = []
    skipped = list(pre.failed)
    makers = [
        (kind, make)
        for kind, make in (("reference", closed_examples), ("asr", open_examples))
        if config.transcripts in (kind, "both")
    ]
    for kind, make in makers:
        for part, utts, into in (("train", train_utts, train_ex), ("validation", val_utts, val_ex)):
            examples, missed = make(utts, pre, builder, cache_root, desc=f"features {part} ({kind})")
            into.extend(examples)
            skipped.extend(missed)
    return train_ex, val_ex, skipped


def training_text_model(config: TrainConfig) -> str:
    """The text model the features are made with: none when the networks do not read text
    (they would ignore it; the checkpoint then tells the pipeline not to run it either)."""
    from .textemb import NO_TEXT

    return NO_TEXT if "text" in config.net.ablate else config.text_model


def held_out_speakers(config: TrainConfig) -> list[str]:
    """The speakers of the held-out fold (none when ``holdout_fold`` is -1)."""
    if config.holdout_fold < 0:
        return []
    folds = data.load_folds(config.folds)
    if config.holdout_fold >= len(folds):
        raise ValueError(f"holdout_fold {config.holdout_fold} out of range: the folds file has {len(folds)} folds")
    return folds[config.holdout_fold]


def speaker_parts(config: TrainConfig, utterances: list[data.Utterance]) -> dict[str, list[str]]:
    """Training and early-stopping speakers: every speaker of the folder but the held-out fold's."""
    return data.training_parts(
        data.speaker_scores(utterances),
        held_out_speakers(config),
        validation=config.validation_speakers,
        seed=config.seed,
    )


def _fit_member(
    config: TrainConfig, member: int, train_ex: list[Example], val_ex: list[Example], state_path: Path
) -> tuple[Any, dict[str, Any]]:
    """Train one ensemble member with its own seed; resumes from ``state_path``."""
    import torch

    seed = config.seed + member
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    net = build_scorer(config.net)
    _init_heads(net, train_ex)
    optimizer = torch.optim.AdamW(net.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    rng = random.Random(seed)
    start_epoch, best, best_epoch, history = 0, math.inf, -1, []
    best_state: dict[str, Any] | None = None
    if state_path.is_file():
        state = torch.load(state_path, map_location="cpu", weights_only=False)
        if state.get("config") == asdict(config):
            net.load_state_dict(state["net"])
            optimizer.load_state_dict(state["optimizer"])
            rng.setstate(state["rng"])
            torch.set_rng_state(state["torch_rng"])
            start_epoch, best, best_epoch, history, best_state = (
                state["epoch"] + 1,
                state["best"],
                state["best_epoch"],
                state["history"],
                state["best_state"],
            )
            if state.get("done"):
                start_epoch = config.epochs
            log.info("member %d: resuming from epoch %d", member, start_epoch)
    bar = tqdm(
        range(start_epoch, config.epochs),
        desc=f"training scorer {member + 1}/{config.members}",
        unit="epoch",
        dynamic_ncols=True,
        initial=start_epoch,
        total=config.epochs,
    )
    done = False
    for epoch in bar:
        net.train()
        losses = []
        for batch in _batches(train_ex, config.batch_size, rng):
            loss, _, _ = batch_loss(net, batch, config.word_weight)
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
            optimizer.step()
            losses.append(loss.item())
        net.eval()
        batches = _batches(val_ex, 64, None)
        with torch.no_grad():
            parts = [batch_loss(net, b, config.word_weight) for b in batches]
        val_s = sum(p[1] * len(b) for p, b in zip(parts, batches)) / max(1, len(val_ex))
        val_w = sum(p[2] * len(b) for p, b in zip(parts, batches)) / max(1, len(val_ex))
        val = val_s + config.word_weight * val_w
        history.append(
            {
                "epoch": epoch,
                "train_loss": float(np.mean(losses)),
                "validation_sentence_mse": val_s,
                "validation_word_mse": val_w,
            }
        )
        bar.set_postfix(train=f"{history[-1]['train_loss']:.4f}", val=f"{val:.4f}")
        if val < best - 1e-5:
            best, best_epoch = val, epoch
            best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
        done = epoch - best_epoch >= config.patience
        torch.save(
            {
                "config": asdict(config),
                "net": net.state_dict(),
                "optimizer": optimizer.state_dict(),
                "rng": rng.getstate(),
                "torch_rng": torch.get_rng_state(),
                "epoch": epoch,
                "best": best,
                "best_epoch": best_epoch,
                "history": history,
                "best_state": best_state,
                "done": done,
            },
            state_path,
        )
        if done:
            break
    if best_state is not None:
        net.load_state_dict(best_state)
    return net, {
        "member": member,
        "seed": seed,
        "best_epoch": best_epoch,
        "best_validation_loss": best,
        "history": history,
    }


def fit_blend(
    nets: list[Any], train_ex: list[Example], val_ex: list[Example], probe_inputs: str = "mean-std"
) -> tuple[Any, list[float], dict[str, float]]:
    """A ridge probe on frame statistics and, per sentence aspect, the weight of its blend
    with the networks: alpha and weights are those with the lowest validation MSE for a
    probe fitted on the training speakers; the probe kept is then refitted with that alpha
    on training + validation speakers (as the baseline is)."""
    import torch

    from . import probe

    def stats(items: list[Example]) -> np.ndarray:
        return np.stack([probe.describe(e.features, probe_inputs) for e in items])

    x_train, y_train = stats(train_ex), np.stack([e.sentence for e in train_ex])
    x_val, y_val = stats(val_ex), np.stack([e.sentence for e in val_ex])
    ridge = probe.fit_choosing_alpha(x_train, y_train, x_val, y_val, probe_inputs)[0]
    probe_val = ridge.predict(x_val)
    with torch.no_grad():
        batch = collate([e.features for e in val_ex])
        net_val = torch.stack([n.eval()(batch)["sentence"] for n in nets]).mean(0).numpy() * SCALE
    grid = np.linspace(0.0, 1.0, 11)
    weights, mse = [], {}
    for i, aspect in enumerate(SENTENCE_NAMES):
        losses = [float(np.mean(((1 - w) * net_val[:, i] + w * probe_val[:, i] - y_val[:, i]) ** 2)) for w in grid]
        weights.append(float(grid[int(np.argmin(losses))]))
        mse[aspect] = round(min(losses), 4)
    return (
        probe.fit_ridge(np.vstack([x_train, x_val]), np.vstack([y_train, y_val]), ridge.alpha, probe_inputs),
        weights,
        mse,
    )


def _init_heads(net: Any, train_ex: list[Example]) -> None:
    """Start the sentence head at the training mean: the first epochs then learn differences, not the offset."""
    import torch

    if not train_ex:
        return
    mean = np.mean(np.stack([e.sentence for e in train_ex]), axis=0) / SCALE
    with torch.no_grad():
        net.sentence_head.bias.copy_(torch.from_numpy(mean).float())


def train(config: TrainConfig) -> dict[str, Any]:
    """Train ``config.members`` networks, write them as one checkpoint to ``config.out``, return the report.

    Raises:
        ModelMismatchError: the aligner was trained on another ASR_t than ``config.asr_target``.
    """
    started = time.time()
    config = for_asr(config)
    models = checkpoint_models.current(config.asr_target, config.asr_recognized)
    train_ex, val_ex, skipped = prepare(config)
    out = Path(config.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    nets, members = [], []
    for m in range(config.members):
        net, summary = _fit_member(config, m, train_ex, val_ex, out.with_suffix(f".state{m}.pt"))
        nets.append(net)
        members.append(summary)
    blend = (
        fit_blend(nets, train_ex, val_ex, config.probe_inputs) if config.blend_probe and train_ex and val_ex else None
    )
    # the needs-improvement thresholds come from the reference words' own labels when there are any
    labelled = [e for e in train_ex if e.mode == "closed"] or train_ex
    labels = np.concatenate([e.words for e in labelled]) if labelled else np.zeros((0, len(WORD_NAMES)))
    sentences = np.stack([e.sentence for e in train_ex]) if train_ex else np.zeros((0, len(SENTENCE_NAMES)))
    train_utterances = len({e.utt for e in train_ex})
    floor = {a: float(sentences[:, i].min()) for i, a in enumerate(SENTENCE_NAMES)} if len(sentences) else {}
    report = {
        "config": asdict(config),
        "train_utterances": train_utterances,
        "validation_utterances": len({e.utt for e in val_ex}),
        "train_examples": len(train_ex),
        "validation_examples": len(val_ex),
        "skipped": skipped,
        "members": members,
        "probe_blend": None
        if blend is None
        else {
            "alpha": blend[0].alpha,
            "inputs": blend[0].inputs,
            "weight": blend[1],
            "validation_mse": blend[2],
            "refitted_on": "training + validation speakers",
        },
        "best_validation_loss": float(np.mean([m["best_validation_loss"] for m in members])),
        "word_label_stats": word_label_stats(labels) if len(labels) else {},
        "parameters": sum(p.numel() for net in nets for p in net.parameters()),
        "seconds": round(time.time() - started, 1),
        "asr": models.to_dict(),
    }
    save_scorer(
        str(out),
        nets,
        config.net,
        thresholds=training_thresholds(labels, config.needs_improvement_k) if len(labels) else {},
        floor=floor,
        aligner=config.aligner,
        text_model=config.text_model,
        metadata={
            "members": len(nets),
            "train_utterances": train_utterances,
            "transcripts": config.transcripts,
            "seed": config.seed,
            "holdout_fold": config.holdout_fold,
            "needs_improvement_k": config.needs_improvement_k,
            "word_label_stats": word_label_stats(labels) if len(labels) else {},
        },
        probe=None if blend is None else (blend[0], blend[1]),
        asr=models,
    )
    out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    for m in range(config.members):
        out.with_suffix(f".state{m}.pt").unlink(missing_ok=True)
    return report

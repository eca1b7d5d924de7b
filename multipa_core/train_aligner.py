"""``multipa train-aligner``: fit the CTC phone-posterior network and report on it.

Training speakers fit the network, validation speakers stop it early, and the
report measures development speakers only: the phone error rate of free
decoding against the canonical phones, and how often forced word boundaries fall
within 100 ms of Whisper's own word timestamps. The network reads ASR_t's encoder
frames (``asr_target``, Whisper base by default): its input size is that model's
frame size, and the checkpoint records the model (:mod:`multipa_core.checkpoint_models`).
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

from . import align, checkpoint_models, data, phones as ph, settings
from .asr import Transcript, normalize_word
from .distance import levenshtein
from .lexicon import default_lexicon

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainAlignerConfig:
    """Options of one training run."""

    data: str  # data folder (speechocean762 layout)
    out: str  # checkpoint path to write
    cache: str = ""  # feature cache root ("" = the default cache directory)
    epochs: int = 30  # upper bound; early stopping usually ends sooner
    patience: int = 5  # epochs without validation improvement before stopping
    batch_size: int = 16  # utterances per step
    lr: float = 2e-3  # Adam learning rate
    seed: int = 762  # python, numpy and torch seeds
    limit: int = 0  # use only the first N training utterances (0 = all); for smoke runs
    net: align.AlignerConfig = field(default_factory=align.AlignerConfig)  # shape (input_dim becomes ASR_t's)
    boundary_tolerance: float = 0.1  # seconds, for the word-boundary agreement metric
    asr_target: str = checkpoint_models.DEFAULT_TARGET  # ASR_t: Whisper registry name or CTranslate2 directory


def _examples(utterances: list[data.Utterance], frames: dict[str, np.ndarray]) -> list[tuple[np.ndarray, list[int]]]:
    out = []
    for u in utterances:
        if u.utt in frames:
            tokens = ph.to_classes(u.phones)
            if 0 < len(tokens) <= len(frames[u.utt]):
                out.append((frames[u.utt], tokens))
    return out


def _batches(examples: list[Any], size: int, rng: random.Random) -> list[list[Any]]:
    # Sort by length inside shuffled pools so padding stays small.
    order = list(examples)
    rng.shuffle(order)
    pools = [sorted(order[i : i + size * 8], key=lambda e: len(e[0])) for i in range(0, len(order), size * 8)]
    batches = [pool[i : i + size] for pool in pools for i in range(0, len(pool), size)]
    rng.shuffle(batches)
    return batches


def _tensors(batch: list[tuple[np.ndarray, list[int]]]) -> tuple[Any, Any, Any, Any]:
    import torch

    lengths = torch.tensor([len(f) for f, _ in batch])
    x = torch.zeros(len(batch), int(lengths.max()), batch[0][0].shape[1])
    for i, (f, _) in enumerate(batch):
        x[i, : len(f)] = torch.from_numpy(f.astype(np.float32))
    targets = torch.tensor([t for _, ts in batch for t in ts])
    target_lengths = torch.tensor([len(ts) for _, ts in batch])
    return x, lengths, targets, target_lengths


def _loss(net: Any, batch: list[Any], ctc: Any) -> Any:
    x, lengths, targets, target_lengths = _tensors(batch)
    log_probs = net(x, lengths)
    return ctc(log_probs.transpose(0, 1), targets, lengths, target_lengths)


def reevaluate(config: TrainAlignerConfig) -> dict[str, Any]:
    """Evaluate the checkpoint at ``config.out`` again and update its JSON report."""
    import torch

    from .precompute import precompute

    state = torch.load(config.out, map_location="cpu", weights_only=True)
    net = align.build_net(align.AlignerConfig(**state["config"]))
    net.load_state_dict({k: v.float() for k, v in state["state_dict"].items()})
    net.eval()
    target = checkpoint_models.recorded(state, config.out).target  # the frames it was trained on
    checkpoint_models.check_same("target", target, checkpoint_models.describe(target.model), checkpoint=config.out)
    dev_utts = data.select(data.load_utterances(config.data), "development")
    dev = precompute(
        dev_utts,
        None,
        config.cache or str(settings.cache_dir() / "features"),
        target=True,
        desc="encoding + ASR_t development",
        target_model=target.model,
    )
    path = Path(config.out).with_suffix(".json")
    report = json.loads(path.read_text()) if path.is_file() else {}
    report["development"] = evaluate(net, dev_utts, dev.frames, dev.target, tolerance=config.boundary_tolerance)
    path.write_text(json.dumps(report, indent=2) + "\n")
    return report


def train(config: TrainAlignerConfig) -> dict[str, Any]:
    """Train, save the best checkpoint to ``config.out`` and return the report."""
    import torch

    from .precompute import precompute

    models = checkpoint_models.current(config.asr_target, None)
    if config.net.input_dim != models.target.frame_dim:
        config = replace(config, net=replace(config.net, input_dim=models.target.frame_dim))

    random.seed(config.seed)
    np.random.seed(config.seed)
    torch.manual_seed(config.seed)
    started = time.time()
    cache_root = config.cache or str(settings.cache_dir() / "features")
    utterances = data.load_utterances(config.data)
    train_utts = data.select(utterances, "train")
    if config.limit:
        train_utts = train_utts[: config.limit]
    val_utts = data.select(utterances, "validation")
    dev_utts = data.select(utterances, "development")
    if config.limit:
        val_utts, dev_utts = val_utts[: max(2, config.limit // 4)], dev_utts[: max(2, config.limit // 4)]

    fitting = precompute(
        train_utts + val_utts, None, cache_root, desc="encoding train+validation", target_model=config.asr_target
    )

    train_ex, val_ex = _examples(train_utts, fitting.frames), _examples(val_utts, fitting.frames)
    net = align.build_net(config.net)
    optimizer = torch.optim.AdamW(net.parameters(), lr=config.lr, weight_decay=1e-2)
    ctc = torch.nn.CTCLoss(blank=ph.BLANK, zero_infinity=True)
    rng = random.Random(config.seed)
    best, best_epoch, history = math.inf, -1, []
    out = Path(config.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    best_state: dict[str, Any] | None = None
    bar = tqdm(range(config.epochs), desc="training aligner", unit="epoch", dynamic_ncols=True)
    for epoch in bar:
        net.train()
        total = 0.0
        batches = _batches(train_ex, config.batch_size, rng)
        for batch in batches:
            loss = _loss(net, batch, ctc)
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 5.0)
            optimizer.step()
            total += loss.item()
        net.eval()
        with torch.no_grad():
            val = [float(_loss(net, b, ctc)) * len(b) for b in _batches(val_ex, config.batch_size, random.Random(0))]
        val_loss = sum(val) / max(1, len(val_ex))
        history.append({"epoch": epoch, "train_loss": total / max(1, len(batches)), "validation_loss": val_loss})
        bar.set_postfix(train=f"{history[-1]['train_loss']:.3f}", val=f"{val_loss:.3f}")
        if val_loss < best - 1e-4:
            best, best_epoch = val_loss, epoch
            best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
        elif epoch - best_epoch >= config.patience:
            break
    if best_state is not None:
        net.load_state_dict(best_state)
    net.eval()
    dev = precompute(
        dev_utts, None, cache_root, target=True, desc="encoding + ASR_t development", target_model=config.asr_target
    )
    metrics = evaluate(net, dev_utts, dev.frames, dev.target, tolerance=config.boundary_tolerance)
    report = {
        "config": asdict(config),
        "train_utterances": len(train_ex),
        "validation_utterances": len(val_ex),
        "failed": fitting.failed + dev.failed,
        "best_epoch": best_epoch,
        "best_validation_loss": best,
        "history": history,
        "development": metrics,
        "parameters": sum(p.numel() for p in net.parameters()),
        "seconds": round(time.time() - started, 1),
        "asr": models.to_dict(),
    }
    align.save_checkpoint(str(out), net, config.net, {"development": metrics, "best_epoch": best_epoch}, asr=models)
    out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def evaluate(
    net: Any,
    utterances: list[data.Utterance],
    frames: dict[str, np.ndarray],
    transcripts: dict[str, Transcript],
    *,
    tolerance: float = 0.1,
) -> dict[str, Any]:
    """Development metrics: free-decoding PER and word-boundary agreement with Whisper.

    Whisper puts the first word of a turn at (or near) 0 s whatever leading
    silence there is, so boundary agreement is also reported without first-word
    starts, with the median signed offset (ours minus Whisper's).
    """
    import torch

    lexicon = default_lexicon()
    errors = reference = 0
    starts: list[float] = []  # ours - whisper, seconds
    ends: list[float] = []
    first: list[bool] = []
    for u in tqdm(utterances, desc="evaluating aligner", unit="utt", dynamic_ncols=True):
        if u.utt not in frames:
            continue
        x = torch.from_numpy(frames[u.utt].astype(np.float32))[None]
        with torch.no_grad():
            log_probs = net(x, torch.tensor([x.shape[1]]))[0].numpy()
        canonical = [ph.base(p) for p in u.phones]
        errors += levenshtein(align.greedy_decode(log_probs), canonical)
        reference += len(canonical)
        if u.utt not in transcripts:
            continue
        whisper_words = [w for w in transcripts[u.utt].words if normalize_word(w.text)]
        texts = [normalize_word(w.text) for w in whisper_words]
        alignment = align.force_align(log_probs, texts, [lexicon.phones(t) for t in texts])
        if len(alignment.words) != len(whisper_words):
            continue  # a word without phones: pairs would not line up
        for i, (ours, theirs) in enumerate(zip(alignment.words, whisper_words)):
            starts.append(ours.start - theirs.start)
            ends.append(ours.end - theirs.end)
            first.append(i == 0)
    d_start, d_end, is_first = np.abs(starts), np.abs(ends), np.array(first, dtype=bool)

    def share(values: np.ndarray) -> float:
        return round(float(np.mean(values <= tolerance)), 4) if len(values) else 0.0

    return {
        "utterances": len(utterances),
        "phone_error_rate": round(errors / max(1, reference), 4),
        "words_compared": len(starts),
        "word_start_within_tolerance": share(d_start),
        "word_end_within_tolerance": share(d_end),
        "word_boundary_within_tolerance": share(np.concatenate([d_start, d_end])),
        "word_start_within_tolerance_after_first_word": share(d_start[~is_first]),
        "word_boundary_within_tolerance_after_first_word_start": share(np.concatenate([d_start[~is_first], d_end])),
        "median_start_offset_seconds": round(float(np.median(starts)), 3) if starts else 0.0,
        "median_end_offset_seconds": round(float(np.median(ends)), 3) if ends else 0.0,
        "first_word_median_start_offset_seconds": round(float(np.median(np.array(starts)[is_first])), 3)
        if is_first.any()
        else 0.0,
        "tolerance_seconds": tolerance,
    }

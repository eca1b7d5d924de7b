"""The ``multipa`` command: one subcommand per job.

Errors a user can act on print ``error [code]: sentence`` on stderr and exit 2;
no traceback reaches the terminal.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import TYPE_CHECKING, Callable, Sequence

from . import settings
from .checkpoint_models import DEFAULT_RECOGNIZED, DEFAULT_TARGET
from .errors import MultipaError

if TYPE_CHECKING:
    from .train import TrainConfig


def _features(args: argparse.Namespace) -> int:
    from . import audio as audio_io
    from .pipeline import FeaturePipeline, PipelineOptions

    samples = audio_io.load(args.audio)  # fail on bad input before loading models
    pipeline = FeaturePipeline(
        PipelineOptions(
            device=args.device,
            aligner=args.aligner,
            word_timestamps=True,
            target=args.asr_target,
            recognizer=args.asr_recognized,
        )
    )
    analysis = pipeline.analyze(samples, reference=args.text)
    doc = analysis.to_dict(profile=args.profile)
    if args.json:
        print(json.dumps(doc, indent=2))
        return 0
    print(f"mode: {doc['mode']}   duration: {doc['duration']:.2f} s")
    for side in ("target", "recognized"):
        print(f"\n{side}: {doc[side]['text']}")
        for w in doc[side]["words"]:
            phones = " ".join(f"{p['phone']}({p['probability']:.2f})" for p in w["phones"])
            print(f"  {w['start']:6.2f}-{w['end']:6.2f}  {w['text']:<14} {phones}")
    print("\nfeatures:")
    for name, shape in doc["features"].items():
        print(f"  {name:<16} {tuple(shape)}")
    if args.profile:
        print("\nprofile (s):")
        for stage, seconds in doc["profile"].items():
            print(f"  {stage:<16} {seconds:.3f}")
    return 0


def _train_aligner(args: argparse.Namespace) -> int:
    from .train_aligner import TrainAlignerConfig, reevaluate, train

    config = TrainAlignerConfig(
        data=args.data,
        out=args.out,
        cache=args.cache,
        epochs=args.epochs,
        limit=args.limit,
        seed=args.seed,
        asr_target=args.asr_target or DEFAULT_TARGET,
    )
    report = reevaluate(config) if args.evaluate_only else train(config)
    summary = {"best_epoch": report.get("best_epoch"), "failed": len(report.get("failed", [])), **report["development"]}
    print(json.dumps(summary, indent=2) if args.json else "\n".join(f"{k:<32} {v}" for k, v in summary.items()))
    return 0


def _recipe(args: argparse.Namespace, out: str) -> TrainConfig:
    from .model import ScorerConfig
    from .train import TrainConfig, for_asr

    return for_asr(
        TrainConfig(
            data=args.data,
            out=out,
            cache=args.cache,
            epochs=args.epochs,
            limit=args.limit,
            seed=args.seed,
            aligner=args.aligner,
            members=args.members,
            blend_probe=not args.no_probe_blend,
            net=ScorerConfig(ablate=tuple(args.ablate)),
            transcripts=args.transcripts,
            probe_inputs=args.probe_inputs,
            needs_improvement_k=args.needs_improvement_k,
            word_weight=args.word_weight,
            holdout_fold=getattr(args, "holdout_fold", -1),
            asr_target=args.asr_target or DEFAULT_TARGET,
            asr_recognized=args.asr_recognized or DEFAULT_RECOGNIZED,
        )
    )


def _train(args: argparse.Namespace) -> int:
    from .train import train

    report = train(_recipe(args, args.out))
    summary = {k: report[k] for k in ("train_utterances", "validation_utterances", "best_validation_loss", "seconds")}
    summary["best_epochs"] = [m["best_epoch"] for m in report["members"]]
    summary["skipped"] = len(report["skipped"])
    print(json.dumps(summary, indent=2) if args.json else "\n".join(f"{k:<24} {v}" for k, v in summary.items()))
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from .evaluate import EvalConfig, evaluate, format_table

    every_fold = args.fold == "all"
    try:
        fold = -1 if every_fold else int(args.fold)
    except ValueError:
        raise MultipaError(f"--fold takes a fold number or 'all', not {args.fold!r}") from None
    config = EvalConfig(
        data=args.data,
        mode=args.mode,
        limit=args.limit,
        part=args.part,
        fold=fold,
        model=args.model,
        cache=args.cache,
        probe_blend=not args.no_probe_blend,
        per_speaker=args.per_speaker,
        diagnose=not args.no_diagnosis,
    )
    if every_fold:
        from .crossval import evaluate_folds

        report = evaluate_folds(config)
    else:
        report = evaluate(config)
    print(json.dumps(report) if args.json else format_table(report))
    return 0


def _precompute(args: argparse.Namespace) -> int:
    from . import data
    from .precompute import interleaved, precompute

    try:
        index, count = (int(x) for x in args.shard.split("/"))
        if not 0 <= index < count:
            raise ValueError
    except ValueError:
        raise MultipaError(f"--shard takes I/N with 0 <= I < N, not {args.shard!r}") from None
    items = interleaved(data.load_utterances(args.data), args.per_speaker)[index::count]
    pre = precompute(
        items,
        None,
        args.cache or str(settings.cache_dir() / "features"),
        recognized=True,
        target=True,
        layers=args.layers,
        desc=f"ASR {args.shard}",
        target_model=args.asr_target or DEFAULT_TARGET,
        recognized_model=args.asr_recognized or DEFAULT_RECOGNIZED,
    )
    print(json.dumps({"utterances": len(items), "cached": len(pre.frames), "failed": pre.failed}))
    return 0


def _fit_words(args: argparse.Namespace) -> int:
    from .word_crossval import WordStageConfig, crossvalidate, markdown, ship, with_fit, write_json

    config = with_fit(
        WordStageConfig(
            data=args.data, workdir=args.workdir, model=args.model, cache=args.cache, per_speaker=args.per_speaker
        ),
        hidden=args.hidden,
        epochs=args.epochs,
        members=args.members,
    )
    report = None
    if not args.ship_only:
        report = crossvalidate(config)
        if args.json_out:
            write_json(report, args.json_out)
        print(json.dumps(report) if args.json else markdown(report))
    if args.ship:
        ship(config, args.ship, report)
        print(f"wrote {args.ship}", file=sys.stderr)
    return 0


def _crossval(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .crossval import CrossvalConfig, crossval, format_table

    config = CrossvalConfig(
        recipe=_recipe(args, ""),
        workdir=args.workdir,
        folds=tuple(args.folds),
        modes=tuple(args.modes),
        probe_blend=not args.evaluate_without_blend,
    )
    report = crossval(config)
    if args.ship:
        from .crossval import ship

        k = report["open"]["needs_improvement_rule"]["chosen_k"] if args.ship_k is None else args.ship_k
        report["shipped"] = ship(config, args.ship, k, report)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    if args.markdown:
        from .crossval import markdown

        print(markdown(report))
        return 0
    print(json.dumps(report) if args.json else format_table(report))
    return 0


def _rethreshold(args: argparse.Namespace) -> int:
    from .scorer import set_needs_improvement_rule

    thresholds = set_needs_improvement_rule(args.model, args.k)
    print(json.dumps({"model": args.model, "k": args.k, "thresholds": thresholds}))
    return 0


def _add_recipe_options(p: argparse.ArgumentParser) -> None:
    """The options that define a scorer recipe (shared by train and crossval)."""
    p.add_argument("--data", default=str(settings.data_dir()), help="data folder (speechocean762 layout)")
    p.add_argument("--cache", default="", help="feature cache root (default: the MULTIPA cache directory)")
    p.add_argument("--aligner", default="multipa-aligner", help="aligner checkpoint the features are made with")
    p.add_argument("--members", type=int, default=3, help="networks trained with different seeds and averaged")
    p.add_argument(
        "--no-probe-blend",
        action="store_true",
        help="sentence scores from the networks alone (no ridge probe blended in)",
    )
    p.add_argument(
        "--ablate",
        nargs="*",
        default=["text"],
        choices=["acoustic", "phones", "text", "alignment", "utterance"],
        help="input groups the network does not read (default: text, as the shipped scorer; --ablate alone keeps every group)",
    )
    p.add_argument(
        "--probe-inputs",
        default="encoder-layers",
        choices=["mean-std", "mean-std-p10-p90", "two-encoders-pronunciation", "encoder-layers"],
        help="what the blended ridge probe reads: ASR_t frame statistics (with percentiles), those of both encoders plus a pronunciation summary, or all that plus the statistics of every ASR_t encoder layer",
    )
    p.add_argument(
        "--transcripts",
        default="both",
        choices=["reference", "asr", "both"],
        help="target transcripts to train on: the reference text (the paper), ASR_t's with word labels carried over by time overlap (as open mode sees a turn), or both",
    )
    p.add_argument("--word-weight", type=float, default=1.0, help="weight of the word loss beside the sentence loss")
    p.add_argument(
        "--needs-improvement-k",
        type=float,
        default=1.0,
        help="flag a word below mean - k sd of the training word scores (accuracy or total)",
    )
    p.add_argument("--epochs", type=int, default=80)
    p.add_argument("--limit", type=int, default=0, help="first N training utterances only (smoke runs)")
    p.add_argument("--seed", type=int, default=762)
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    _add_asr_options(p, f"default {DEFAULT_TARGET}", f"default {DEFAULT_RECOGNIZED}")


def _add_asr_options(p: argparse.ArgumentParser, target_default: str, recognized_default: str | None) -> None:
    """``--asr-target`` (and ``--asr-recognized`` when ``recognized_default`` is given): the Whisper models."""
    p.add_argument(
        "--asr-target",
        default=settings.asr_target(),
        metavar="NAME_OR_DIR",
        help=f"ASR_t, whose encoder frames feed the aligner and the scorer: a Whisper registry name or a "
        f"CTranslate2 Whisper directory ({target_default}; MULTIPA_ASR_TARGET)",
    )
    if recognized_default is not None:
        p.add_argument(
            "--asr-recognized",
            default=settings.asr_recognized(),
            metavar="NAME_OR_DIR",
            help=f"ASR_r, the recognizer: a Whisper registry name or a CTranslate2 Whisper directory "
            f"({recognized_default}; MULTIPA_ASR_RECOGNIZED)",
        )


def _assess(args: argparse.Namespace) -> int:
    from . import audio as audio_io
    from .assess import Assessor
    from .pipeline import PipelineOptions

    samples = audio_io.load(args.audio)  # fail on bad input before loading models
    options = PipelineOptions(device=args.device, target=args.asr_target, recognizer=args.asr_recognized)
    assessment = Assessor(options, scorer=args.model).assess(samples, reference=args.text)
    if args.json:
        print(json.dumps(assessment.to_dict(), indent=2))
        return 0
    print(f"recognized: {assessment.transcript}\ntarget:     {assessment.target_transcript}\n")
    for name, value in assessment.sentence.items():
        print(f"  {name:<13} {value:5.2f}  {'#' * int(round(value * 2))}")
    print(f"\n  {'word':<14}{'time (ms)':>13} {'acc':>5} {'str':>5} {'tot':>5}")
    for w in assessment.words:
        flag = "  <- needs work" if w.needs_improvement else ""
        print(f"  {w.text:<14}{w.start_ms:>6}-{w.end_ms:<6} {w.accuracy:5.1f} {w.stress:5.1f} {w.total:5.1f}{flag}")
        heard = " ".join(
            f"/{p.ipa}/"
            if p.error in (None, "none")
            else f"/{p.ipa}/->{'/' + p.heard_ipa + '/' if p.heard_ipa else '-'}"
            for p in w.phones
        )
        extra = "".join(f" +/{p['ipa']}/" for p in w.inserted_phones)
        print(f"  {'':<14}{heard}{extra}{'   [' + ', '.join(w.errors) + ']' if w.errors else ''}")
    for ins in assessment.diagnosis.get("insertions", []):
        print(f"  inserted word: {ins['text']} ({ins['start_ms']}-{ins['end_ms']} ms)")
    for reading in assessment.diagnosis.get("prosody", {}).get("readings", {}).values():
        print(f"  {reading}")
    if assessment.feedback:
        print("\nfeedback:")
        for item in assessment.feedback:
            print(f"  - {item['sentence']}")
    return 0


def _models(args: argparse.Namespace) -> int:
    from . import registry

    for name in registry.known_names():
        spec = registry.KNOWN[name]
        try:
            where = str(registry.resolve(name))
        except MultipaError as exc:
            where = f"unavailable: {exc}"
        print(f"{name:<18} {spec.kind:<8} {where}\n{'':<28}{spec.description}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="multipa", description="MultiPA pronunciation assessment: pipeline, training and evaluation."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("features", help="transcripts, alignments and feature shapes of one audio file")
    p.add_argument("audio", help="WAV or FLAC file (any rate, mono or stereo)")
    p.add_argument("--text", default=None, help="the reference sentence (closed mode)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--profile", action="store_true", help="add per-stage wall time")
    p.add_argument("--device", default=settings.device(), choices=["auto", "cpu", "cuda"])
    p.add_argument("--aligner", default="multipa-aligner", help="aligner checkpoint name or path")
    _add_asr_options(p, f"default {DEFAULT_TARGET}", f"default {DEFAULT_RECOGNIZED}")
    p.set_defaults(run=_features)

    p = sub.add_parser("train-aligner", help="train the CTC phone aligner on a data folder")
    p.add_argument("--data", default=str(settings.data_dir()), help="data folder (speechocean762 layout)")
    p.add_argument("--out", required=True, help="checkpoint to write (a .json report goes beside it)")
    p.add_argument("--cache", default="", help="feature cache root (default: the MULTIPA cache directory)")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--limit", type=int, default=0, help="first N training utterances only (smoke runs)")
    p.add_argument("--seed", type=int, default=762)
    p.add_argument(
        "--evaluate-only", action="store_true", help="re-run the development report of the checkpoint at --out"
    )
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    _add_asr_options(p, f"default {DEFAULT_TARGET}; the aligner reads no ASR_r", None)
    p.set_defaults(run=_train_aligner)

    p = sub.add_parser(
        "train", help="train the MultiPA scorer on a data folder (every speaker, or all but one cross-validation fold)"
    )
    p.add_argument("--out", required=True, help="checkpoint to write (a .json report goes beside it)")
    p.add_argument(
        "--holdout-fold",
        type=int,
        default=-1,
        help="leave this cross-validation fold's speakers out entirely (-1: train on every speaker)",
    )
    _add_recipe_options(p)
    p.set_defaults(run=_train)

    p = sub.add_parser(
        "crossval",
        help="a recipe's accuracy by speaker-grouped 5-fold cross-validation (train on 4 folds, evaluate the 5th, each in turn)",
    )
    p.add_argument(
        "--workdir",
        required=True,
        help="folder for each fold's checkpoint, evaluation and predictions (a rerun resumes)",
    )
    p.add_argument("--out", default="", help="write the aggregated report (JSON) here")
    p.add_argument("--folds", type=int, nargs="*", default=[], help="run only these folds (default: all)")
    p.add_argument("--modes", nargs="+", default=["open", "closed"], choices=["open", "closed"])
    p.add_argument(
        "--evaluate-without-blend",
        action="store_true",
        help="evaluate the fold networks alone (ablation of the probe blend)",
    )
    p.add_argument(
        "--ship",
        default="",
        help="then write the shipped scorer here: every fold's networks bagged, the probe refitted on every speaker",
    )
    p.add_argument("--markdown", action="store_true", help="print the tables of docs/models.md instead")
    p.add_argument(
        "--ship-k",
        type=float,
        default=None,
        help="its needs-improvement rule (default: the k the cross-validation chose in open mode)",
    )
    _add_recipe_options(p)
    p.set_defaults(run=_crossval)

    p = sub.add_parser(
        "rethreshold",
        help="set a scorer checkpoint's needs-improvement rule (mean - k sd of its training word scores) without retraining",
    )
    p.add_argument("model", help="scorer checkpoint path (rewritten in place)")
    p.add_argument(
        "--k", type=float, required=True, help="flag a word whose predicted accuracy or total is below mean - k sd"
    )
    p.set_defaults(run=_rethreshold)

    p = sub.add_parser(
        "precompute",
        help="fill the feature cache with the ASR outputs of a data folder (resumes; speakers interleaved)",
    )
    p.add_argument("--data", default=str(settings.data_dir()), help="data folder (speechocean762 layout)")
    p.add_argument("--per-speaker", type=int, default=0, help="first N utterances of each speaker only (0: all)")
    p.add_argument(
        "--shard",
        default="0/1",
        help="I/N: every N-th utterance from the I-th, so that N processes share the work (default 0/1)",
    )
    p.add_argument("--layers", action="store_true", help="also the statistics of ASR_t's encoder layers (the probe's)")
    p.add_argument("--cache", default="", help="feature cache root (default: the MULTIPA cache directory)")
    _add_asr_options(p, "default: whisper-base", "default: whisper-tiny.en")
    p.set_defaults(run=_precompute)

    p = sub.add_parser(
        "fit-words",
        help="cross-validate the word stage on a bagged scorer's held-out predictions, and ship it into a checkpoint",
    )
    p.add_argument("--data", default=str(settings.data_dir()), help="data folder (speechocean762 layout)")
    p.add_argument("--model", default="multipa-scorer", help="bagged scorer checkpoint that records its folds")
    p.add_argument("--workdir", required=True, help="where the held-out rows are kept (a rerun reads them back)")
    p.add_argument("--per-speaker", type=int, default=0, help="first N utterances of each speaker only (0: all)")
    p.add_argument("--cache", default="", help="feature cache root (default: the MULTIPA cache directory)")
    p.add_argument("--hidden", type=int, default=64, help="hidden units of each perceptron")
    p.add_argument("--epochs", type=int, default=30, help="passes over the rows")
    p.add_argument("--members", type=int, default=3, help="perceptrons averaged")
    p.add_argument("--json-out", default="", help="write the cross-validation report here")
    p.add_argument("--json", action="store_true", help="print the report as one JSON object")
    p.add_argument("--ship", default="", help="write the checkpoint with the fitted stage here")
    p.add_argument("--ship-only", action="store_true", help="fit and ship without the cross-validation")
    p.set_defaults(run=_fit_words)

    p = sub.add_parser("evaluate", help="PCC, SCC and MSE against the experts on a data folder")
    p.add_argument("--data", default=str(settings.data_dir()), help="data folder (speechocean762 layout)")
    p.add_argument("--mode", default="open", choices=["open", "closed"])
    p.add_argument("--limit", type=int, default=0, help="first N utterances only")
    p.add_argument(
        "--part",
        default="all",
        choices=["auto", "all", "train", "validation", "development"],
        help="part of the older fixed split (default: every utterance of the folder)",
    )
    p.add_argument(
        "--fold",
        default="-1",
        help="only the speakers of this cross-validation fold (multipa_core/splits/speechocean762-folds.json); "
        "on a bagged checkpoint that records its folds, with the network trained without them and no probe "
        "blend; 'all': every fold so, pooled",
    )
    p.add_argument("--per-speaker", type=int, default=0, help="first N utterances of each speaker only (0: all)")
    p.add_argument("--no-diagnosis", action="store_true", help="leave the diagnosis' word flag and error types out")
    p.add_argument(
        "--model", default="multipa-scorer", help="scorer checkpoint name or path, or 'probe' for the ridge baseline"
    )
    p.add_argument(
        "--no-probe-blend", action="store_true", help="score with the checkpoint's networks alone (ablation)"
    )
    p.add_argument("--cache", default="", help="feature cache root")
    p.add_argument("--json", action="store_true", help="print exactly one JSON object")
    p.set_defaults(run=_evaluate)

    p = sub.add_parser("assess", help="assess one audio file")
    p.add_argument("audio", help="WAV or FLAC file (any rate, mono or stereo)")
    p.add_argument("--text", default=None, help="the reference sentence (closed mode)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--model", default="multipa-scorer", help="scorer checkpoint name or path")
    p.add_argument("--device", default=settings.device(), choices=["auto", "cpu", "cuda"])
    _add_asr_options(p, "default: the scorer checkpoint's", "default: the scorer checkpoint's")
    p.set_defaults(run=_assess)

    p = sub.add_parser("models", help="list the known models and where they resolve")
    p.set_defaults(run=_models)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = settings.validated(build_parser).parse_args(argv)  # a bad MULTIPA_* value: one line, exit 2
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    run: Callable[[argparse.Namespace], int] = args.run
    try:
        return run(args)
    except MultipaError as exc:
        print(f"error [{exc.code}]: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

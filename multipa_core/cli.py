"""The ``multipa`` command: one subcommand per job.

Errors a user can act on print ``error [code]: sentence`` on stderr and exit 2;
no traceback reaches the terminal.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Any, Callable, Sequence

from . import settings
from .errors import MultipaError


def _features(args: argparse.Namespace) -> int:
    from . import audio as audio_io
    from .pipeline import FeaturePipeline, PipelineOptions

    samples = audio_io.load(args.audio)  # fail on bad input before loading models
    pipeline = FeaturePipeline(PipelineOptions(device=args.device, aligner=args.aligner))
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
    from .train_aligner import TrainAlignerConfig, train

    config = TrainAlignerConfig(data=args.data, out=args.out, cache=args.cache, epochs=args.epochs, limit=args.limit, seed=args.seed)
    report = train(config)
    summary = {"best_epoch": report["best_epoch"], "failed": len(report["failed"]), **report["development"]}
    print(json.dumps(summary, indent=2) if args.json else "\n".join(f"{k:<32} {v}" for k, v in summary.items()))
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
    parser = argparse.ArgumentParser(prog="multipa", description="MultiPA pronunciation assessment: pipeline, training and evaluation.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("features", help="transcripts, alignments and feature shapes of one audio file")
    p.add_argument("audio", help="WAV or FLAC file (any rate, mono or stereo)")
    p.add_argument("--text", default=None, help="the reference sentence (closed mode)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--profile", action="store_true", help="add per-stage wall time")
    p.add_argument("--device", default=settings.device(), choices=["auto", "cpu", "cuda"])
    p.add_argument("--aligner", default="multipa-aligner", help="aligner checkpoint name or path")
    p.set_defaults(run=_features)

    p = sub.add_parser("train-aligner", help="train the CTC phone aligner on a data folder")
    p.add_argument("--data", default=str(settings.data_dir()), help="data folder (speechocean762 layout)")
    p.add_argument("--out", required=True, help="checkpoint to write (a .json report goes beside it)")
    p.add_argument("--cache", default="", help="feature cache root (default: the MULTIPA cache directory)")
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--limit", type=int, default=0, help="first N training utterances only (smoke runs)")
    p.add_argument("--seed", type=int, default=762)
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(run=_train_aligner)

    p = sub.add_parser("models", help="list the known models and where they resolve")
    p.set_defaults(run=_models)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    run: Callable[[argparse.Namespace], int] = args.run
    try:
        return run(args)
    except MultipaError as exc:
        print(f"error [{exc.code}]: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _entry() -> Any:  # pragma: no cover
    sys.exit(main())


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

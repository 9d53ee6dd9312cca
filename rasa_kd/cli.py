"""The ``rasa-kd`` command line: parses arguments, calls the library, prints results."""
import argparse
import logging
import os
import sys
import warnings
from pathlib import Path
from typing import List, Optional

from rasa_kd.errors import RasaKDError
from rasa_kd.openblas import choose_kernels

# Loggers of libraries that announce things on import or on first use (TensorFlow, absl, Transformers,
# h5py, Rasa's own): shown from ERROR up unless --verbose.
THIRD_PARTY_LOGGERS = ("tensorflow", "absl", "transformers", "h5py", "rasa", "matplotlib", "urllib3", "numexpr", "sanic")


def _add_convert(subparsers: argparse._SubParsersAction) -> None:
    from rasa_kd.data.formats import READERS

    parser = subparsers.add_parser(
        "convert",
        help="convert a data set to Rasa YAML NLU files",
        description="Write OUTPUT/train.yml (and dev.yml/test.yml where the source has them) plus "
        "OUTPUT/dataset.json, the record of source files, counts and skipped rows.",
    )
    parser.add_argument("format", choices=sorted(READERS), metavar="FORMAT", help=f"one of: {', '.join(READERS)}")
    parser.add_argument("source", type=Path, metavar="SOURCE", help="the data set's folder (or file, for rasa)")
    parser.add_argument("--output", "-o", type=Path, required=True, metavar="DIR", help="folder to write")
    parser.add_argument("--text-column", default="text", help="csv: header name of the text column (default: text)")
    parser.add_argument("--label-column", default="label", help="csv: header name of the label column (default: label)")
    parser.add_argument("--dev-size", type=int, metavar="N",
                        help="hold out N random training examples as dev.yml (for data sets without a dev split)")
    parser.add_argument("--per-intent", type=int, metavar="N",
                        help="a few-shot version: at most N random training examples per intent, none that is also in "
                        "dev or test, and no dev split; test is kept whole")
    parser.add_argument("--seed", type=int, default=0, help="seed of --dev-size and --per-intent (default: 0)")
    parser.add_argument("--force", action="store_true", help="replace DIR if it exists and is not empty")
    parser.set_defaults(run=_run_convert)


def _run_convert(args: argparse.Namespace) -> int:
    from rasa_kd.data.convert import convert_dataset

    options = {}
    if args.format == "csv":
        options = {"text_column": args.text_column, "label_column": args.label_column}
    record = convert_dataset(args.format, args.source, args.output, overwrite=args.force,
                             dev_size=args.dev_size, seed=args.seed, per_intent=args.per_intent, **options)
    print(f"{'split':<6} {'rows':>7} {'examples':>9} {'intents':>8} {'skipped':>8}")
    for split, info in record["splits"].items():
        print(f"{split:<6} {info['rows']:>7} {info['examples']:>9} {len(info['intents']):>8} {info['skipped']:>8}")
    if record["skipped_reasons"]:
        reasons = ", ".join(f"{count} {reason}" for reason, count in record["skipped_reasons"].items())
        print(f"skipped: {reasons} (each with file and line in dataset.json)")
    for note in record["notes"]:
        print(f"note: {note}")
    print(f"wrote {args.output}")
    return 0


STAGE_HELP = {
    "distill": "run every stage: teacher, augment, label, student, evaluate",
    "teacher": "fine-tune the teacher on --train (or copy the one given by --teacher)",
    "augment": "build the transfer set (training sentences + augmented ones)",
    "label": "compute the teacher's logits for the transfer set (cached, resumable)",
    "student": "train the student on the labelled transfer set",
    "evaluate": "score teacher and student; write metrics.json, report.md and plots",
}


def _add_stage(subparsers: argparse._SubParsersAction, stage: str) -> None:
    parser = subparsers.add_parser(
        stage,
        help=STAGE_HELP[stage],
        description=f"{STAGE_HELP[stage]}. Settings come from --config (or OUT/config.yml from an earlier "
        "stage), then the flags; the resolved config is saved as OUT/config.yml.",
    )
    parser.add_argument("--output", "-o", type=Path, required=True, metavar="OUT", help="the run's folder")
    parser.add_argument("--config", "-c", type=Path, help="YAML config file (e.g. configs/distill/sara.yml)")
    parser.add_argument("--train", help="Rasa YAML NLU training file (data.train)")
    parser.add_argument("--dev", help="Rasa YAML NLU dev file (data.dev)")
    parser.add_argument("--test", help="Rasa YAML NLU test file (data.test)")
    parser.add_argument("--out-of-scope", metavar="FILE",
                        help="out-of-scope test sentences, scored for confidence by evaluate (data.out_of_scope)")
    parser.add_argument("--student", choices=("bilstm", "tinybert"), help="student architecture (student.type)")
    parser.add_argument("--teacher", metavar="PATH", help="reuse a teacher folder or Rasa .tar.gz (teacher.path)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override any setting, e.g. --set student.training.epochs=5 (repeatable)")
    parser.add_argument("--force", action="store_true", help="redo stages even if their inputs did not change")
    parser.add_argument("--strategy", choices=("one_device", "mirrored", "multi_worker"),
                        help="where training computes (compute.strategy; multi_worker reads TF_CONFIG, see docs/scaling.md)")
    bars = parser.add_mutually_exclusive_group()
    bars.add_argument("--progress", dest="progress", action="store_const", const=True,
                      help="progress bars even when standard error is not a terminal (default: only on a terminal)")
    bars.add_argument("--no-progress", dest="progress", action="store_const", const=False, help="no progress bars")
    parser.set_defaults(run=_run_stage, stage=stage, progress=None)


def resolve_config(args: argparse.Namespace):
    """--config (or OUT/config.yml), then the flags."""
    from rasa_kd.distill.config import load_config, parse_override

    base = args.config
    if base is None and (args.output / "config.yml").is_file():
        base = args.output / "config.yml"
    overrides = {}
    for flag, key in (("train", "data.train"), ("dev", "data.dev"), ("test", "data.test"), ("out_of_scope", "data.out_of_scope"),
                      ("student", "student.type"), ("teacher", "teacher.path"), ("strategy", "compute.strategy")):
        if getattr(args, flag) is not None:
            overrides[key] = getattr(args, flag)
    for item in args.set:
        keys, value = parse_override(item)
        overrides[".".join(keys)] = value
    return load_config(base, overrides)


def _run_stage(args: argparse.Namespace) -> int:
    from rasa_kd.distill import pipeline

    config = resolve_config(args)
    progress = sys.stderr.isatty() if args.progress is None else args.progress
    if args.stage == "distill":
        metrics = pipeline.distill(config, args.output, progress=progress, force=args.force)
    else:
        metrics = pipeline.run_stage(args.stage, config, args.output, progress=progress, force=args.force)
    if args.stage in ("distill", "evaluate"):
        _print_metrics(metrics)
        print(f"wrote {args.output / 'metrics.json'} and {args.output / 'report.md'}")
    else:
        print(f"{args.stage}: done; output in {args.output}")
    return 0


def _print_metrics(metrics: dict) -> None:
    print(f"{'model':<8} {'split':<6} {'accuracy':>9} {'micro-F1':>9} {'macro-F1':>9} {'MCC':>7} {'ms/sent':>8} {'params':>12}")
    for name in ("teacher", "student"):
        block = metrics[name]
        for split, s in block["scores"].items():
            print(f"{name:<8} {split:<6} {100 * s['accuracy']:>9.1f} {100 * s['micro_f1']:>9.1f} "
                  f"{100 * s['macro_f1']:>9.1f} {100 * s['mcc']:>7.1f} {block['latency_ms']['batch_1']:>8.2f} {block['params']:>12,}")
    for name in ("teacher", "student"):
        c = metrics[name].get("confidence")
        if c:
            floor = (f" (a calibrated model's on as many messages: up to {c['ece_if_calibrated']['p95']:.3f})"
                     if c.get("ece_if_calibrated") else "")
            line = (f"{name} confidence on {c['split']}: ECE {c['ece']:.3f}{floor}; threshold keeping 95% of in-scope answers "
                    f"{c['threshold']:.2f}")
            if c["auroc"] is not None:
                line += f"; out of scope: AUROC {c['auroc']:.3f}, {100 * c['out_of_scope_recall']:.1f}% caught"
            print(line)
            if c.get("dev_threshold"):
                d = c["dev_threshold"]
                print(f"{name} fallback threshold picked on {d['split']}: {d['threshold']:.2f} (keeps "
                      f"{100 * d['in_scope_kept']:.1f}% of in-scope answers on {c['split']})")
    r = metrics["ratios"]
    print(f"student vs teacher: {r['params']:.1f}x fewer parameters, {r['latency_batch_1']:.1f}x faster at batch 1, "
          f"{r['latency_batch_256']:.1f}x at batch 256")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rasa-kd", description="Distil BERT intent classifiers for Rasa.")
    parser.add_argument("--verbose", "-v", action="store_true",
                        help="log debug messages, and show what TensorFlow, Transformers and other libraries print")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_convert(subparsers)
    for stage in STAGE_HELP:
        _add_stage(subparsers, stage)
    return parser


def configure_output(verbose: bool) -> None:
    """What the user sees: rasa-kd's messages and warnings; other libraries' notices only if ``verbose``.

    Called before TensorFlow or Transformers are imported, so their import-time notices are covered.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "0" if verbose else "2")  # TensorFlow's C++ notices
    if not verbose:
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        # Third-party DeprecationWarnings and the like (SQLAlchemy, pkg_resources, TensorFlow, ...) are
        # hidden; filters are matched newest first, so warnings raised by rasa-kd's code stay visible.
        warnings.filterwarnings("ignore")
        warnings.filterwarnings("default", module=r"rasa_kd(\.|$)")
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.captureWarnings(True)
    if not verbose:
        for name in THIRD_PARTY_LOGGERS:
            logging.getLogger(name).setLevel(logging.ERROR)


def main(argv: Optional[List[str]] = None) -> int:
    os.environ.setdefault("RASA_TELEMETRY_ENABLED", "false")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # every model is a local folder
    choose_kernels()  # before NumPy loads (rasa_kd/openblas.py)
    args = build_parser().parse_args(argv)
    configure_output(args.verbose)
    try:
        return args.run(args)
    except RasaKDError as error:
        print(f"rasa-kd {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

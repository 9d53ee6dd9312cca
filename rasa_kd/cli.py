"""The ``rasa-kd`` command line: parses arguments, calls the library, prints results."""
import argparse
import logging
import os
import sys
from pathlib import Path
from typing import List, Optional

from rasa_kd.errors import RasaKDError

logger = logging.getLogger("rasa_kd")


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
    parser.add_argument("--force", action="store_true", help="replace DIR if it exists and is not empty")
    parser.set_defaults(run=_run_convert)


def _run_convert(args: argparse.Namespace) -> int:
    from rasa_kd.data.convert import convert_dataset

    options = {}
    if args.format == "csv":
        options = {"text_column": args.text_column, "label_column": args.label_column}
    record = convert_dataset(args.format, args.source, args.output, overwrite=args.force, **options)
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rasa-kd", description="Distil BERT intent classifiers for Rasa.")
    parser.add_argument("--verbose", "-v", action="store_true", help="log debug messages")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_convert(subparsers)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    os.environ.setdefault("RASA_TELEMETRY_ENABLED", "false")
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        return args.run(args)
    except RasaKDError as error:
        print(f"rasa-kd {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

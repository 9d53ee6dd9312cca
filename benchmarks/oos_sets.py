"""Out-of-scope test sets for the confidence benchmarks, built from ../shared/datasets (issue 13).

- SNIPS: the 500 TREC_10 test questions and 500 SST-2 test sentences (sentence_level/stsa.binary.test,
  drawn with seed 0): questions and film reviews, neither of which a voice assistant's 7 intents cover.
- Sara without out_of_scope: a converted Sara set (train.yml, test.yml) split in two; the `out_of_scope`
  intent's examples leave training and its test examples become the out-of-scope test sentences
  (the few-shot set folder gains train-no-oos.yml, test-no-oos.yml, out_of_scope.txt).

Nothing here is used to make, tune or pick a threshold: the models never see these files in training.

    .venv/bin/python benchmarks/oos_sets.py snips OUT.txt
    .venv/bin/python benchmarks/oos_sets.py sara runs/fewshot/data/sara-10-s0
"""
import argparse
import sys
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = ROOT.parent / "shared" / "datasets"
SARA_OUT_OF_SCOPE = "out_of_scope"


def snips_out_of_scope(data_dir: Path = DATA, per_source: int = 500) -> List[str]:
    """TREC test questions and SST-2 test sentences, ``per_source`` of each."""
    trec = [line.split(" ", 1)[1].strip() for line in (data_dir / "trec" / "TREC_10.label").read_text(encoding="latin-1").splitlines()
            if line.strip()]
    sst2 = [line.split(" ", 1)[1].strip() for line in (data_dir / "sst2" / "sentence_level" / "stsa.binary.test").read_text(
        encoding="utf-8").splitlines() if line.strip()]
    rng = np.random.default_rng(0)
    return trec[:per_source] + [sst2[i] for i in sorted(rng.choice(len(sst2), size=per_source, replace=False))]


def split_out_of_scope(folder: Path, intent: str = SARA_OUT_OF_SCOPE) -> Dict[str, str]:
    """train/test of a converted set without ``intent``, and its test examples as out-of-scope sentences."""
    from rasa_kd.data.nlu_yaml import dump_nlu_yaml, load_intent_examples
    from rasa_kd.io_utils import write_text

    files = {"train": folder / "train-no-oos.yml", "test": folder / "test-no-oos.yml", "out_of_scope": folder / "out_of_scope.txt"}
    if all(path.is_file() for path in files.values()):
        return {name: str(path) for name, path in files.items()}
    out_of_scope = []
    for split in ("train", "test"):
        by_intent: Dict[str, List[str]] = {}
        for text, label in load_intent_examples(folder / f"{split}.yml"):
            if label == intent:
                if split == "test":
                    out_of_scope.append(text)
            else:
                by_intent.setdefault(label, []).append(text)
        dump_nlu_yaml(files[split], by_intent)
    if not out_of_scope:
        raise SystemExit(f"{folder / 'test.yml'} has no {intent!r} examples")
    write_text(files["out_of_scope"], "".join(t + "\n" for t in out_of_scope))
    return {name: str(path) for name, path in files.items()}


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("which", choices=("snips", "sara"))
    parser.add_argument("path", type=Path, help="snips: the file to write; sara: a converted set's folder")
    args = parser.parse_args(argv)
    if args.which == "snips":
        from rasa_kd.io_utils import write_text

        sentences = snips_out_of_scope()
        args.path.parent.mkdir(parents=True, exist_ok=True)
        write_text(args.path, "".join(s + "\n" for s in sentences))
        print(f"{args.path}: {len(sentences)} sentences")
    else:
        print(split_out_of_scope(args.path))
    return 0


if __name__ == "__main__":
    sys.exit(main())

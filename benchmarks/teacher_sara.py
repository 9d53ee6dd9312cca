"""Fine-tune the default teacher on the Sara thesis TSV with `rasa train nlu` and score it with
`rasa test nlu` on dev and test. Prints the figures and saves them to benchmarks/results/.

    .venv/bin/python benchmarks/teacher_sara.py [--data-dir ../shared/datasets] [--work runs/teacher_sara]
"""
import argparse
import datetime
import json
import os
import platform
import sys
import time
from pathlib import Path

os.environ["RASA_TELEMETRY_ENABLED"] = "false"

import yaml  # noqa: E402

from rasa_kd.data.convert import convert_dataset  # noqa: E402
from rasa_kd.io_utils import read_json, write_json  # noqa: E402
from rasa_kd.distill.evaluate import classification_scores  # noqa: E402
from rasa_kd.provenance import package_versions  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
from rasa_process import run_rasa  # noqa: E402  (scripts/rasa_process.py)


def rasa_test_scores(work: Path, split: str) -> dict:
    out = work / "results" / split
    run_rasa(["test", "nlu", "--nlu", f"data/{split}.yml", "--model", "models/teacher.tar.gz", "--out", str(out), "--successes"], cwd=work)
    rows = []
    for name in ("intent_successes.json", "intent_errors.json"):
        if (out / name).is_file():
            rows += read_json(out / name)
    gold = [r["intent"] for r in rows]
    predicted = [r["intent_prediction"]["name"] for r in rows]
    return classification_scores(gold, predicted)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "datasets")
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "teacher_sara")
    parser.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results" / "teacher_sara.json")
    args = parser.parse_args()

    work = args.work.resolve()
    record = convert_dataset("sara", args.data_dir / "sara" / "thesis_tsv", work / "data", overwrite=True)
    config = {
        "recipe": "default.v1",
        "language": "en",
        "assistant_id": "rasa-kd-sara-teacher",
        "pipeline": [{"name": "rasa_kd.BertIntentClassifier"}],  # all defaults
    }
    (work / "config.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    started = time.perf_counter()
    run_rasa(["train", "nlu", "--config", "config.yml", "--nlu", "data/train.yml", "--out", "models",
              "--fixed-model-name", "teacher"], cwd=work, capture=False)
    train_seconds = time.perf_counter() - started
    result = {
        "benchmark": "teacher_sara",
        "date": datetime.date.today().isoformat(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.platform()}",
        "command": "python benchmarks/teacher_sara.py",
        "versions": package_versions(),
        "data": {split: info["examples"] for split, info in record["splits"].items()},
        "teacher_config": "rasa_kd.BertIntentClassifier defaults",
        "rasa_train_nlu_seconds": round(train_seconds, 1),
        "dev": rasa_test_scores(work, "dev"),
        "test": rasa_test_scores(work, "test"),
        "thesis_bert_large_micro_f1": {"dev": 0.875, "test": 0.883},
    }
    args.results.parent.mkdir(parents=True, exist_ok=True)
    write_json(args.results, result)
    print(json.dumps({k: result[k] for k in ("data", "rasa_train_nlu_seconds", "dev", "test")}, indent=2))
    print(f"saved {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

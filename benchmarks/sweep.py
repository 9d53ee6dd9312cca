"""Try setting variants on a finished distillation run and tabulate what each gives.

Each variant reuses the base run's teacher (and transfer set and cached logits, unless the variant
changes transfer_set settings), trains its own student and evaluates it:

    .venv/bin/python benchmarks/sweep.py --base runs/sara-bilstm --name sara-bilstm \\
        --variant "kl_T2:student.training.loss=kl,student.training.temperature=2" \\
        --variant "alpha05:student.training.alpha=0.5"

Results: runs/sweeps/NAME/VARIANT/ and benchmarks/results/sweep-NAME.json (appended, so a sweep can
grow over several calls).
"""
import argparse
import datetime
import os
import shutil
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("RASA_TELEMETRY_ENABLED", "false")

from rasa_kd.distill import pipeline  # noqa: E402
from rasa_kd.distill.config import load_config, parse_override  # noqa: E402
from rasa_kd.io_utils import read_json, write_json  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def parse_variant(text: str):
    name, _, settings = text.partition(":")
    overrides = {}
    for item in filter(None, settings.split(",")):
        keys, value = parse_override(item)
        overrides[".".join(keys)] = value
    return name, overrides


def link_tree(source: Path, target: Path) -> None:
    """Copy a folder as hard links (no extra disk for the teacher's weights)."""
    shutil.copytree(source, target, copy_function=os.link, dirs_exist_ok=True)


def run_variant(base: Path, out: Path, overrides: dict, progress: bool) -> dict:
    config = load_config(base / "config.yml", {**overrides, "labelling.cache_dir": str((base / "cache").resolve())})
    out.mkdir(parents=True, exist_ok=True)
    if not (out / "teacher").exists():
        link_tree(base / "teacher", out / "teacher")
    shutil.copy(base / "stages.json", out / "stages.json")
    changes_transfer_set = any(key.startswith("transfer_set.") for key in overrides)
    if changes_transfer_set:
        pipeline.run_stage("augment", config, out, progress=progress)
    else:
        for name in ("transfer_set.jsonl", "transfer_set.json"):
            shutil.copy(base / name, out / name)
    pipeline.run_stage("student", config, out, progress=progress, force=True)
    return pipeline.run_stage("evaluate", config, out, progress=progress)


def summary(metrics: dict) -> dict:
    teacher, student = metrics["teacher"], metrics["student"]
    return {
        "student_scores": {split: {k: round(v, 4) for k, v in s.items() if k != "examples"} for split, s in student["scores"].items()},
        "teacher_scores": {split: {k: round(v, 4) for k, v in s.items() if k != "examples"} for split, s in teacher["scores"].items()},
        "agreement": student["agreement_with_teacher"],
        "params": student["params"],
        "latency_ms_batch_1": round(student["latency_ms"]["batch_1"], 3),
        "transfer_set_size": metrics["transfer_set"].get("size"),
        "student_seconds": metrics["stages"].get("student", {}).get("seconds"),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", type=Path, required=True, help="a finished run (OUT of rasa-kd distill)")
    parser.add_argument("--name", required=True, help="name of the sweep")
    parser.add_argument("--variant", action="append", required=True, metavar="NAME:KEY=VALUE,KEY=VALUE")
    parser.add_argument("--metric", default="accuracy")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args()

    results_file = ROOT / "benchmarks" / "results" / f"sweep-{args.name}.json"
    results = read_json(results_file) if results_file.is_file() else {"base": str(args.base), "variants": {}}
    for text in args.variant:
        name, overrides = parse_variant(text)
        print(f"== {name}: {overrides}", flush=True)
        metrics = run_variant(args.base, ROOT / "runs" / "sweeps" / args.name / name, overrides, not args.no_progress)
        results["variants"][name] = {"overrides": overrides, "date": datetime.date.today().isoformat(), **summary(metrics)}
        results_file.parent.mkdir(parents=True, exist_ok=True)
        write_json(results_file, results)
    print(f"\n{'variant':<28} " + " ".join(f"{split + ' ' + args.metric:>14}" for split in ("dev", "test")) + f" {'agree dev':>10}")
    for name, r in results["variants"].items():
        scores = " ".join(f"{100 * r['student_scores'].get(split, {}).get(args.metric, float('nan')):>14.1f}" for split in ("dev", "test"))
        print(f"{name:<28} {scores} {100 * r['agreement']['dev']:>10.1f}")
    print(f"saved {results_file}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Full-size tasks after the small-bot defaults: the BiLSTM student of Sara and TREC with their configs,
to compare with benchmarks/results/task-TASK.json (written before the student read every teacher WordPiece).

    .venv/bin/python benchmarks/noregression.py sara trec
    .venv/bin/python benchmarks/noregression.py trec --seeds 1 2   # the student's spread over its seed

With --seeds, only the student is trained again, from the teacher and the cached logits of the first
run, with student.training.random_seed set to each seed (the transfer set stays the same).

A variant of the defaults: --tag NAME with --set KEY=VALUE (repeatable), kept apart as TASK-NAME (its own
folder and result entry), e.g. TREC without outlier exposure:

    .venv/bin/python benchmarks/noregression.py trec --tag no-outliers --set teacher.outliers=0 --set transfer_set.outliers=0

Results: benchmarks/results/noregression.json (and each run's folder under runs/noregression/TASK).
"""
import argparse
import datetime
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from run_task import prepare_data  # noqa: E402

from rasa_kd.io_utils import read_json, write_json  # noqa: E402


def main(tasks, seeds=(), settings=(), tag=None):
    from rasa_kd.distill import pipeline
    from rasa_kd.distill.config import load_config, parse_override

    variant = {".".join(keys): value for keys, value in map(parse_override, settings)}
    flags = (f" --tag {tag}" if tag else "") + "".join(f" --set {item}" for item in settings)

    target = ROOT / "benchmarks" / "results" / "noregression.json"
    results = read_json(target) if target.is_file() else {}
    for task in tasks:
        name = f"{task}-{tag}" if tag else task
        work = ROOT / "runs" / "noregression" / name
        files = prepare_data(task, ROOT.parent / "shared" / "datasets", work, None)
        overrides = {f"data.{split}": path for split, path in files.items()}
        overrides.update({"student.type": "bilstm", "labelling.cache_dir": str(work / "cache"), **variant})
        if seeds:
            for seed in seeds:
                seeded = {**overrides, "teacher.path": str(work / "bilstm" / "teacher"), "student.training.random_seed": seed}
                metrics = pipeline.distill(load_config(ROOT / "configs" / "distill" / f"{task}.yml", seeded), work / f"bilstm-seed{seed}", progress=False)
                results[name].setdefault("student_seeds", {})[str(seed)] = {
                    "command": f"python benchmarks/noregression.py {task}{flags} --seeds {seed}",
                    "bilstm": {s: v[results[name]["metric"]] for s, v in metrics["student"]["scores"].items()}}
                write_json(target, results)
                print(name, seed, results[name]["student_seeds"][str(seed)], flush=True)
            continue
        metrics = pipeline.distill(load_config(ROOT / "configs" / "distill" / f"{task}.yml", overrides), work / "bilstm", progress=False)
        before = read_json(ROOT / "benchmarks" / "results" / f"task-{task}.json")
        metric = before["metric"]
        results[name] = {
            "date": datetime.date.today().isoformat(), "metric": metric,
            "command": f"python benchmarks/noregression.py {task}{flags}", "settings": variant,
            "before": {model: {s: v[metric] for s, v in before["models"][model]["scores"].items()} for model in ("teacher", "bilstm")},
            "after": {"teacher": {s: v[metric] for s, v in metrics["teacher"]["scores"].items()},
                      "bilstm": {s: v[metric] for s, v in metrics["student"]["scores"].items()}},
            "student_size_bytes": {"before": before["models"]["bilstm"]["size_bytes"], "after": metrics["student"]["size_bytes"]},
            "teacher_size_bytes": metrics["teacher"]["size_bytes"],
        }
        write_json(target, results)
        print(name, results[name], flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tasks", nargs="*", default=["sara", "trec"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[], help="train the student again with these seeds")
    parser.add_argument("--tag", help="name of a variant (with --set): results under TASK-TAG")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a distillation setting of the variant")
    args = parser.parse_args()
    if args.set and not args.tag:
        parser.error("--set needs --tag: a variant is kept apart from the defaults' results")
    main(args.tasks, args.seeds, args.set, args.tag)

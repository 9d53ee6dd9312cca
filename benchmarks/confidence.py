"""Can a fallback threshold trust the confidence? Teacher, students and DIET of one saved few-shot
run, scored on in-scope test messages and on out-of-scope ones, top confidence as the score.

    .venv/bin/python benchmarks/confidence.py --name example_bot \
        --work runs/fewshot/defaults/example_bot --diet runs/fewshot/diet/example_bot/diet/models/diet.tar.gz \
        --test example_bot/tests/test_nlu.yml --out-of-scope example_bot/tests/out_of_scope.yml

`--calibrate` gives students saved before `student.training.calibrate` the temperature their distillation would
fit today. The threshold of each row keeps 95% of the in-scope answers of the test set itself (an oracle, the
usual "recall at 95% in-scope kept"); ECE uses 15 equal-width bins. Results:
benchmarks/results/confidence/NAME.json and .md.
"""
import argparse
import asyncio
import datetime
import sys
from pathlib import Path
from typing import List, Optional, Tuple

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rasa_kd.io_utils import write_json, write_text  # noqa: E402


def diet_top(archive: Path, texts: List[str]) -> Tuple[List[Optional[str]], np.ndarray]:
    """DIET's top intent and its confidence for each text, as /model/parse gives them."""
    from rasa.core.agent import load_agent

    agent = asyncio.run(load_agent(model_path=str(archive)))

    async def parse_all():
        return [await agent.parse_message(text) for text in texts]

    parsed = asyncio.run(parse_all())
    return [p["intent"].get("name") for p in parsed], np.array([p["intent"].get("confidence") or 0.0 for p in parsed])


def calibrate(student, teacher, config_file: Path) -> None:
    """Set ``student.temperature`` as the distillation run of ``config_file`` fits it today (no file is written)."""
    from rasa_kd.distill.config import load_config
    from rasa_kd.distill.pipeline import Distillation

    # Read only: the constructor writes nothing into the run's folder.
    Distillation(load_config(config_file, {}), config_file.parent, progress=False).calibrate_student(student, teacher)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--name", required=True)
    parser.add_argument("--work", type=Path, required=True, help="a fewshot.py set folder (bilstm/, tinybert/)")
    parser.add_argument("--diet", type=Path, help="DIET model archive trained on the same data")
    parser.add_argument("--test", type=Path, required=True)
    parser.add_argument("--out-of-scope", type=Path, help="out-of-scope messages (without: calibration only)")
    parser.add_argument("--calibrate", action="store_true",
                        help="fit the temperature of a student saved without one (before student.training.calibrate) as "
                             "its distillation now would, in memory, before scoring")
    parser.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results" / "confidence")
    args = parser.parse_args(argv)

    from rasa_kd.data.nlu_yaml import load_intent_examples
    from rasa_kd.distill.confidence import confidence_scores, read_out_of_scope, top_intents
    from rasa_kd.models.student import StudentModel
    from rasa_kd.models.teacher import Teacher

    pairs = load_intent_examples(args.test)
    texts, gold = [t for t, _ in pairs], [i for _, i in pairs]
    out_texts = read_out_of_scope(args.out_of_scope) if args.out_of_scope else []
    rows = {}
    models = {"teacher": lambda: Teacher.load(args.work / "bilstm" / "teacher")}
    for kind in ("bilstm", "tinybert"):
        if (args.work / kind / "student").is_dir():
            models[kind] = lambda kind=kind: StudentModel.load(args.work / kind / "student")
    teacher = None
    for name, load in models.items():
        model = load()
        if name == "teacher":
            teacher = model
        elif args.calibrate and "calibration" not in model.record:
            calibrate(model, teacher, args.work / name / "config.yml")
        predicted, top = top_intents(model, texts)
        out_top = top_intents(model, out_texts)[1] if out_texts else None
        rows[name] = confidence_scores(top, [p == g for p, g in zip(predicted, gold)], out_top)
        if name != "teacher":
            rows[name]["temperature"] = model.temperature
    if args.diet:
        predicted, top = diet_top(args.diet, texts)
        out_top = diet_top(args.diet, out_texts)[1] if out_texts else None
        rows["diet"] = confidence_scores(top, [p == g for p, g in zip(predicted, gold)], out_top)
    args.results.mkdir(parents=True, exist_ok=True)
    command = "python benchmarks/confidence.py " + " ".join(sys.argv[1:] if argv is None else argv)
    write_json(args.results / f"{args.name}.json", {"name": args.name, "date": datetime.date.today().isoformat(),
                                                      "command": command, "rows": rows})
    lines = [f"# Confidence on {args.name} ({datetime.date.today().isoformat()})", "", f"`{command}`", "",
             "| model | in-scope accuracy | mean confidence | ECE | a calibrated model's ECE (mean / 95th pct.) | temperature | AUROC in vs out | threshold keeping 95% | "
             "out of scope caught | in-scope accuracy at threshold |", "|---|---|---|---|---|---|---|---|---|---|"]
    for name, r in rows.items():
        auroc = "-" if r["auroc"] is None else f"{r['auroc']:.3f}"
        caught = "-" if r["out_of_scope_recall"] is None else f"{100 * r['out_of_scope_recall']:.1f}%"
        temperature = "-" if "temperature" not in r else f"{r['temperature']:.3f}"
        floor = f"{r['ece_if_calibrated']['mean']:.3f} / {r['ece_if_calibrated']['p95']:.3f}"
        lines.append(f"| {name} | {100 * r['accuracy']:.1f} | {r['mean_confidence']:.3f} | {r['ece']:.3f} | {floor} | {temperature} | {auroc} | "
                     f"{r['threshold']:.2f} | {caught} | {100 * r['in_scope_accuracy_at_threshold']:.1f} |")
    text = "\n".join(lines) + "\n"
    write_text(args.results / f"{args.name}.md", text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

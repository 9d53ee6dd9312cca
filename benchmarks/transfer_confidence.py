"""How sure a run's teacher is of its own transfer set: mean top confidence on a sample of each source of
``transfer_set.jsonl`` (training sentences, rule-made ones, made-up outliers), and on rule-made sentences with
and without a [MASK]. An outlier-exposed teacher that reads rule-made sentences as out of scope gives its
student flat targets on them (benchmarks/NOTES.md, "Full-size tasks with today's defaults").

    .venv/bin/python benchmarks/transfer_confidence.py runs/fewshot/t700/sara-20-s0/bilstm [RUN...]

RUN is a distillation output folder (its teacher/ and transfer_set.jsonl). Results are added to
benchmarks/results/transfer_confidence.json under RUN.
"""
import datetime
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rasa_kd.io_utils import read_json, write_json  # noqa: E402


def top_confidence(teacher, texts) -> np.ndarray:
    logits = teacher.logits(texts)
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    return (probs / probs.sum(axis=1, keepdims=True)).max(axis=1)


def measure(run: Path, per_source: int = 400, masked_sample: int = 600) -> dict:
    """Mean top confidence (and share below 0.5) by source; rule-made sentences split by [MASK]; fixed samples."""
    from rasa_kd.models.teacher import Teacher

    teacher = Teacher.load(run / "teacher")
    rows = [json.loads(line) for line in (run / "transfer_set.jsonl").read_text(encoding="utf-8").splitlines() if line]
    by_source = {}
    for source in ("train", "rules", "outliers"):
        texts = [r["text"] for r in rows if r["source"] == source]
        if texts:
            by_source[source] = texts
    out = {}
    rng = np.random.default_rng(0)
    for source, texts in by_source.items():
        picked = [texts[i] for i in rng.choice(len(texts), min(per_source, len(texts)), replace=False)]
        confidence = top_confidence(teacher, picked)
        out[source] = {"sentences": len(picked), "mean": float(confidence.mean()), "below_half": float((confidence < 0.5).mean())}
    rules = by_source.get("rules", [])
    if rules:
        picked = [rules[i] for i in np.random.default_rng(0).choice(len(rules), min(masked_sample, len(rules)), replace=False)]
        confidence, masked = top_confidence(teacher, picked), np.array(["[MASK]" in s for s in picked])
        out["rules_split"] = {"masked_share": float(masked.mean()),
                              "masked_mean": float(confidence[masked].mean()) if masked.any() else None,
                              "unmasked_mean": float(confidence[~masked].mean()) if (~masked).any() else None}
    return out


def main(argv=None) -> int:
    runs = [Path(a) for a in (argv if argv is not None else sys.argv[1:])]
    if not runs:
        print(__doc__)
        return 2
    target = ROOT / "benchmarks" / "results" / "transfer_confidence.json"
    saved = read_json(target) if target.is_file() else {}
    for run in runs:
        result = {"date": datetime.date.today().isoformat(), **measure(run)}
        split = result.get("rules_split", {})
        print(run, " | ".join(f"{s} {v['mean']:.3f} (<0.5: {v['below_half']:.2f})" for s, v in result.items() if isinstance(v, dict) and "mean" in v),
              f"| rule-made with [MASK] {split.get('masked_mean')}, without {split.get('unmasked_mean')}" if split else "", flush=True)
        saved[str(run)] = result
        write_json(target, saved)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Which score separates in-scope from out-of-scope messages best, from logits the models already give:
the top softmax confidence (what Rasa's FallbackClassifier reads), the top logit, or the energy
(logsumexp of the logits; Liu et al. 2020)? And what could temperature scaling give at best: the
softmax at the temperature that minimises the in-scope test ECE (an oracle: picked on the test set, a
bound, not a method). Inference only, on finished runs.

    .venv/bin/python benchmarks/oos_scores.py --tag oe-holdout

AUROC in vs out (sklearn) and out-of-scope caught at the threshold keeping 95% of in-scope test
messages (an oracle threshold: the usual way to compare scores). Writes
benchmarks/results/oos_scores-TAG.json.
"""
import argparse
import datetime
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SETS = {  # name -> (run folder under runs/fewshot/TAG, in-scope test file, out-of-scope file)
    "example_bot": ("example_bot", "example_bot/tests/test_nlu.yml", "example_bot/tests/out_of_scope.yml"),
    "snips-10-s0": ("snips-10-s0", "runs/fewshot/data/snips-10-s0/test.yml", "runs/oos/snips_out_of_scope.txt"),
    "saranoos-10-s0": ("saranoos-10-s0", "runs/fewshot/data/sara-10-s0/test-no-oos.yml",
                       "runs/fewshot/data/sara-10-s0/out_of_scope.txt"),
}


def scores(logits):
    from scipy.special import logsumexp, softmax

    return {"top softmax": softmax(logits, axis=1).max(axis=1), "top logit": logits.max(axis=1),
            "energy": logsumexp(logits, axis=1)}


def best_temperature(logits_in, correct, logits_out) -> dict:
    """The temperature (of a grid) with the lowest in-scope ECE, and what the softmax gives there."""
    import numpy as np
    from scipy.special import softmax

    from rasa_kd.distill.confidence import expected_calibration_error

    def at(t):
        a, b = softmax(logits_in / t, axis=1).max(axis=1), softmax(logits_out / t, axis=1).max(axis=1)
        return {"temperature": t, "ece": round(expected_calibration_error(a, correct), 3), **separation(a, b)}

    grid = [round(float(t), 2) for t in np.exp(np.linspace(np.log(0.25), np.log(4.0), 25))]
    # What a perfectly calibrated model with these confidences would score on this many messages: each
    # answer right with probability its confidence (200 draws). An ECE near it cannot be told from calibrated.
    confidence, rng = softmax(logits_in, axis=1).max(axis=1), np.random.default_rng(0)
    floor = np.mean([expected_calibration_error(confidence, rng.random(len(confidence)) < confidence) for _ in range(200)])
    return {"t1": at(1.0), "best": min((at(t) for t in grid), key=lambda r: r["ece"]), "calibrated_floor": round(float(floor), 3)}


def separation(inside, outside) -> dict:
    import numpy as np
    from sklearn.metrics import roc_auc_score

    threshold = float(np.quantile(inside, 0.05))  # keeps 95% of in-scope messages
    auroc = roc_auc_score(np.r_[np.ones(len(inside)), np.zeros(len(outside))], np.r_[inside, outside])
    return {"auroc": round(float(auroc), 3), "caught": round(float(np.mean(outside < threshold)), 3)}


def load_run(name: str, tag: str):
    """One few-shot run of ``tag``: its folder, the in-scope test examples, the out-of-scope sentences and its
    models (teacher, and each student it has)."""
    from rasa_kd.data.nlu_yaml import load_intent_examples
    from rasa_kd.distill.confidence import read_out_of_scope
    from rasa_kd.models.student import StudentModel
    from rasa_kd.models.teacher import Teacher

    folder, test, oos = SETS[name]
    run = ROOT / "runs" / "fewshot" / tag / folder
    models = {"teacher": Teacher.load(run / "bilstm" / "teacher")}
    for kind in ("bilstm", "tinybert"):
        if (run / kind / "student").is_dir():
            models[kind] = StudentModel.load(run / kind / "student")
    return run, load_intent_examples(ROOT / test), read_out_of_scope(ROOT / oos, "out-of-scope file"), models


def print_row(row: dict, names) -> None:
    print(f"{row['set']:15s} {row['model']:8s} " + "  ".join(
        f"{s}: AUROC {row[s]['auroc']:.3f}, caught {100 * row[s]['caught']:.1f}%" for s in names), flush=True)


def write_rows(benchmark: str, tag: str, rows: list) -> None:
    out = ROOT / "benchmarks" / "results" / f"{benchmark}-{tag}.json"
    out.write_text(json.dumps({"date": datetime.date.today().isoformat(), "command": " ".join(sys.argv), "rows": rows}, indent=2) + "\n",
                   encoding="utf-8")
    print(f"wrote {out}")


def arguments(doc: str) -> argparse.Namespace:
    """--tag and --sets of a script over few-shot runs (the project on the path)."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--tag", default="oe-holdout")
    parser.add_argument("--sets", nargs="+", default=list(SETS), choices=list(SETS))
    sys.path.insert(0, str(ROOT))
    return parser.parse_args()


def main() -> None:
    args = arguments(__doc__)
    rows = []
    for name in args.sets:
        _, examples, outside, models = load_run(name, args.tag)
        inside, gold = [t for t, _ in examples], [i for _, i in examples]
        for model_name, model in models.items():
            logits_in, logits_out = model.logits(inside), model.logits(outside)
            a, b = scores(logits_in), scores(logits_out)
            row = {"set": name, "model": model_name, **{score: separation(a[score], b[score]) for score in a}}
            correct = [model.labels[i] == g for i, g in zip(logits_in.argmax(axis=1), gold)]
            row["temperature"] = best_temperature(logits_in, correct, logits_out)
            rows.append(row)
            print_row(row, a)
            t1, best = row["temperature"]["t1"], row["temperature"]["best"]
            print(f"{'':24s}ECE {t1['ece']:.3f} at T=1 (a calibrated model: {row['temperature']['calibrated_floor']:.3f}); "
                  f"oracle T={best['temperature']}: ECE {best['ece']:.3f}, "
                  f"AUROC {best['auroc']:.3f}, caught {100 * best['caught']:.1f}%", flush=True)
    write_rows("oos_scores", args.tag, rows)


if __name__ == "__main__":
    main()

"""Small bots: teacher, BiLSTM, tiny-BERT and DIET on few-shot versions of the shared data, with the
defaults a user gets.

A set is DATA-N-sS: N training examples per intent drawn from the training split with seed S by
`rasa-kd convert DATA ... --per-intent N --seed S` (none that occurs in dev or test, no dev split),
scored on the full test split. `example_bot` is Spokes (example_bot/data/nlu.yml, 161 examples)
scored on its 160 held-out messages. For each set:

- the teacher and both students come from `rasa-kd distill`'s pipeline with the default settings
  (no config file), the tiny-BERT reusing the BiLSTM run's teacher;
- DIET is Rasa's default NLU pipeline (example_bot/config-diet.yml without its FallbackClassifier,
  100 epochs), trained by `rasa train nlu` and scored by `rasa test nlu`;
- the four models are timed in one process, one sentence at a time in blocks (as run_task.py does).

    .venv/bin/python benchmarks/fewshot.py                          # every set, every model
    .venv/bin/python benchmarks/fewshot.py --sets sara-10-s0 --models diet
    .venv/bin/python benchmarks/fewshot.py --tag try-x --set transfer_set.size=20000   # a variant
    .venv/bin/python benchmarks/fewshot.py --tag d1127 --diet-from defaults   # new defaults, DIET's earlier runs
    .venv/bin/python benchmarks/fewshot.py --tag d1127 --models tinybert     # that student again, its teacher kept
    .venv/bin/python benchmarks/fewshot.py --report                 # the table of every saved result

Results: benchmarks/results/fewshot/TAG/SET.json, and the table benchmarks/results/fewshot/TAG.md.
"""
import argparse
import datetime
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

os.environ["RASA_TELEMETRY_ENABLED"] = "false"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from run_task import latencies, student_shape, train_diet  # noqa: E402

from rasa_kd.io_utils import read_json, sha256_file, write_json, write_text  # noqa: E402
from rasa_kd.provenance import package_versions  # noqa: E402

SOURCES = {"sara": ("sara", "sara/thesis_tsv"), "snips": ("snips", "snips")}
SETS = [f"{data}-{n}-s{seed}" for data in SOURCES for n in (10, 20, 40) for seed in (0, 1, 2)] + ["example_bot"]
# Sara without out_of_scope (its test examples are the out-of-scope test set): confidence runs, not in the default list.
OUT_OF_SCOPE_SETS = [f"saranoos-{n}-s{seed}" for n in (10, 20, 40) for seed in (0, 1, 2)]
MODELS = ("teacher", "bilstm", "tinybert", "diet")
DIET_EPOCHS = 100  # Rasa's default


def prepare(name: str, data_dir: Path, work: Path) -> Dict[str, str]:
    """train.yml and test.yml of set ``name``."""
    if name == "example_bot":
        return {"train": str(ROOT / "example_bot" / "data" / "nlu.yml"), "test": str(ROOT / "example_bot" / "tests" / "test_nlu.yml")}
    from rasa_kd.data.convert import convert_dataset

    data, n, seed = name.rsplit("-", 2)
    if data == "saranoos":  # Sara without its out_of_scope intent (benchmarks/oos_sets.py)
        from oos_sets import split_out_of_scope

        prepare(f"sara-{n}-{seed}", data_dir, work)
        files = split_out_of_scope(work / "data" / f"sara-{n}-{seed}")
        return {"train": files["train"], "test": files["test"]}
    folder = work / "data" / name
    if not (folder / "dataset.json").is_file():
        fmt, source = SOURCES[data]
        convert_dataset(fmt, data_dir / source, folder, overwrite=True, per_intent=int(n), seed=int(seed[1:]))
    return {"train": str(folder / "train.yml"), "test": str(folder / "test.yml")}


def distil(name: str, files: Dict[str, str], work: Path, overrides: dict, progress: bool,
           kinds=("bilstm", "tinybert"), teacher: Optional[Path] = None) -> Dict[str, dict]:
    """BiLSTM (fine-tuning the teacher, unless ``teacher`` is given) and tiny-BERT (reusing it) with the
    default settings and ``overrides``."""
    from rasa_kd.distill import pipeline
    from rasa_kd.distill.config import load_config

    results = {}
    for kind in kinds:
        extra = {"data.train": files["train"], "data.test": files["test"], "student.type": kind,
                 "labelling.cache_dir": str(work / "cache"), **overrides}
        if kind == "tinybert" or teacher is not None:
            extra["teacher.path"] = str(teacher or work / "bilstm" / "teacher")
        print(f"-- {name}: distilling the {kind} student", flush=True)
        started = time.perf_counter()
        metrics = pipeline.distill(load_config(None, extra), work / kind, progress=progress)
        metrics["wall_seconds"] = time.perf_counter() - started
        results[kind] = metrics
    return results


def quick_set(name: str, args, overrides: dict) -> dict:
    """One BiLSTM with ``overrides`` and the teacher of the `defaults` run: scores only, for comparing settings."""
    work = (args.work / args.tag / name).resolve()
    files = prepare(name, args.data_dir, args.work.resolve())
    teacher = (args.work / args.teacher_from / name / "bilstm" / "teacher").resolve() if args.teacher_from else None
    metrics = distil(name, files, work, overrides, args.progress, ("bilstm",), teacher)["bilstm"]
    stages = metrics["stages"]
    return {"set": name, "tag": args.tag, "overrides": overrides, "quick": True,
            "teacher": metrics["teacher"]["scores"]["test"]["accuracy"], "bilstm": metrics["student"]["scores"]["test"]["accuracy"],
            "agreement": metrics["student"]["agreement_with_teacher"]["test"], "vocab": metrics["student"]["vocab_size"],
            "size_mb": metrics["student"]["size_bytes"] / 1e6, "speedup": metrics["ratios"]["latency_batch_1"],
            "transfer_set": metrics["transfer_set"]["size"],
            "student_seconds": stages["student"]["seconds"],
            "distill_seconds": sum(stages[s]["seconds"] for s in ("teacher", "augment", "label", "student") if s in stages)}


def run_set(name: str, args, overrides: dict) -> dict:
    """Teacher, both students and DIET on set ``name``: scores, sizes, wall times (latency: time_set)."""
    from rasa_kd.data.nlu_yaml import load_intent_examples

    work = (args.work / args.tag / name).resolve()
    files = prepare(name, args.data_dir, args.work.resolve())
    counts = {split: len(load_intent_examples(Path(path))) for split, path in files.items()}
    hashes = {split: sha256_file(Path(path)) for split, path in files.items()}
    # DIET does not depend on the students' settings: one run per set serves every tag.
    diet = earlier_diet(args.results, args.diet_from, name, counts, hashes) if args.diet_from else None
    students = distil(name, files, work, overrides, args.progress)
    if diet is None:
        trained = train_diet(name, files, (args.work / "diet" / name).resolve(), DIET_EPOCHS, splits=["test"])
        diet = {"accuracy": trained["scores"]["test"]["accuracy"], "size_bytes": trained["size_bytes"],
                "train_seconds": trained["train_seconds"], "archive": trained["archive"]}
    teacher = students["bilstm"]["teacher"]
    models = {
        "teacher": {"accuracy": teacher["scores"]["test"]["accuracy"], "params": teacher["params"],
                    "size_bytes": teacher["size_bytes"], "train_seconds": students["bilstm"]["stages"]["teacher"]["seconds"]},
        "diet": diet,
    }
    for kind in ("bilstm", "tinybert"):
        models[kind] = student_block(students[kind], work / kind / "student")
    relative_to_teacher(models)
    return {
        "set": name, "tag": args.tag, "date": datetime.date.today().isoformat(),
        "command": command_line(), "overrides": overrides,
        "versions": package_versions(), "work": str(work), "test": files["test"],
        "data": counts, "data_sha256": hashes,
        "transfer_set": students["bilstm"]["transfer_set"], "models": models,
    }


def command_line() -> str:
    return "python benchmarks/fewshot.py " + " ".join(sys.argv[1:])


def student_block(metrics: dict, folder: Path) -> dict:
    """A student's row of a result, from its distillation run's metrics."""
    block, stages = metrics["student"], metrics["stages"]
    return {"accuracy": block["scores"]["test"]["accuracy"], "params": block["params"],
            "size_bytes": block["size_bytes"], "vocab_size": block["vocab_size"],
            "agreement_with_teacher": block["agreement_with_teacher"]["test"], "shape": student_shape(folder),
            # What a user waits for: teacher (the BiLSTM run fine-tunes it), transfer set, logits, student.
            "distill_seconds": sum(stages[s]["seconds"] for s in ("teacher", "augment", "label", "student") if s in stages)}


def relative_to_teacher(models: Dict[str, dict]) -> None:
    for model in models.values():
        model["retention"] = model["accuracy"] / models["teacher"]["accuracy"]
        model["size_vs_teacher"] = model["size_bytes"] / models["teacher"]["size_bytes"]


def redo_student(name: str, args, overrides: dict, kind: str) -> dict:
    """The saved result of set ``name`` with its ``kind`` student distilled again by today's code (the
    set's teacher reused; the pipeline reuses every stage whose inputs did not change). Its latency is
    dropped until ``--time`` measures it again."""
    target = args.results / args.tag / f"{name}.json"
    if not target.is_file():
        raise SystemExit(f"--models {kind}: no saved result {target}; run the set first")
    result = read_json(target)
    work = Path(result["work"])
    files = prepare(name, args.data_dir, args.work.resolve())
    metrics = distil(name, files, work, overrides, args.progress, (kind,), work / "bilstm" / "teacher")[kind]
    result["models"][kind] = student_block(metrics, work / kind / "student")
    relative_to_teacher(result["models"])
    result.setdefault("redone", {})[kind] = {"date": datetime.date.today().isoformat(), "command": command_line()}
    return result


def earlier_diet(results_dir: Path, tag: str, name: str, counts: Dict[str, int], hashes: Dict[str, str]) -> dict:
    """DIET's block of ``tag``'s result of set ``name``, marked as taken from it. The set must be the same:
    as many examples, and the same files where that result recorded their hashes (older results did not;
    the sampler is deterministic and tested to be)."""
    path = results_dir / tag / f"{name}.json"
    if not path.is_file():
        raise SystemExit(f"--diet-from {tag}: {path} does not exist; run that tag on {name} first or leave --diet-from out")
    earlier = read_json(path)
    if earlier["data"] != counts:
        raise SystemExit(f"--diet-from {tag}: {path} was measured on {earlier['data']} examples, this set has {counts}")
    if "data_sha256" in earlier and earlier["data_sha256"] != hashes:
        raise SystemExit(f"--diet-from {tag}: {path} was measured on other files (sha256 {earlier['data_sha256']}, here {hashes})")
    return {**{k: earlier["models"]["diet"][k] for k in ("accuracy", "size_bytes", "train_seconds", "archive")},
            "from_tag": tag, "from_date": earlier["date"]}


def time_set(result: dict, sentences_per_model: int) -> dict:
    """Batch-1 and batch-256 latency of the models of a saved result, in one process (run alone); DIET only
    when its archive is still on disk."""
    from rasa_kd.data.nlu_yaml import load_intent_examples

    sentences = [t for t, _ in load_intent_examples(Path(result["test"]))]
    archive = Path(result["models"]["diet"]["archive"])
    latency, diet_params = latencies(Path(result["work"]), archive if archive.is_file() else None, sentences, sentences_per_model, 3)
    if diet_params is not None:
        result["models"]["diet"]["params"] = diet_params
    for name, model in result["models"].items():
        if name not in latency:
            continue
        model["latency_ms"] = latency[name]
        model["speedup_vs_teacher"] = latency["teacher"]["batch_1"] / latency[name]["batch_1"]
    result["timed"] = datetime.date.today().isoformat()
    return result


def report(results_dir: Path, tag: str) -> str:
    """Mean and spread over seeds of every saved set of ``tag``, as Markdown."""
    rows = [read_json(p) for p in sorted((results_dir / tag).glob("*.json"))]
    groups: Dict[str, List[dict]] = {}
    for row in rows:
        key = row["set"].rsplit("-s", 1)[0] if row["set"] != "example_bot" else "example_bot"
        groups.setdefault(key, []).append(row)

    def stat(values: List[Optional[float]], scale: float = 100.0, digits: int = 1, unit: str = "") -> str:
        values = [v for v in values if v is not None]  # speed-ups: only the seeds --time has timed
        if not values:
            return "-"  # not measured yet
        mean = statistics.mean(values) * scale
        if len(values) < 2:
            return f"{mean:.{digits}f}{unit}"
        return f"{mean:.{digits}f} ± {statistics.stdev(values) * scale:.{digits}f}{unit}"

    lines = [f"# Few-shot sets, tag `{tag}`", "",
             "Test accuracy, mean ± standard deviation over the seeds (3 per set unless noted); retention = student / "
             "teacher; speed-up = teacher's batch-1 latency / the model's, timed in the same process (over the seeds "
             "`--time` has timed); size = the "
             "model's folder / the teacher's; distil = wall time of teacher + transfer set + logits + student.", "",
             "| set | seeds | train | teacher | BiLSTM | tiny-BERT | DIET | BiLSTM retention | tiny-BERT retention | "
             "BiLSTM speed-up | tiny-BERT speed-up | BiLSTM size | BiLSTM distil | tiny-BERT distil | DIET train |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for key, group in groups.items():
        m = lambda model, field: [r["models"][model].get(field) for r in group]  # noqa: E731
        lines.append(
            f"| {key} | {len(group)} | {group[0]['data']['train']} | {stat(m('teacher', 'accuracy'))} | {stat(m('bilstm', 'accuracy'))} | "
            f"{stat(m('tinybert', 'accuracy'))} | {stat(m('diet', 'accuracy'))} | {stat(m('bilstm', 'retention'))}% | "
            f"{stat(m('tinybert', 'retention'))}% | {stat(m('bilstm', 'speedup_vs_teacher'), 1, unit='x')} | "
            f"{stat(m('tinybert', 'speedup_vs_teacher'), 1, unit='x')} | {stat(m('bilstm', 'size_vs_teacher'), 100, 0)}% | "
            f"{stat(m('bilstm', 'distill_seconds'), 1 / 60)} min | {stat(m('tinybert', 'distill_seconds'), 1 / 60)} min | "
            f"{stat(m('diet', 'train_seconds'), 1 / 60)} min |")
    if tag == "defaults":
        lines += ["", "BiLSTM size is the folder as it was saved: the seed-0 runs of `defaults` saved the vocabulary extension "
                  "at int8 (21-24 MB); saved at 4 bits, as since, the same students take 15-18 MB, 16-19% of the teacher "
                  "(benchmarks/extension_effect.py, benchmarks/NOTES.md)."]
    lines += ["", f"Each row from benchmarks/results/fewshot/{tag}/SET.json, written by `python benchmarks/fewshot.py"
              f"{'' if tag == 'defaults' else f' --tag {tag}'}` (the command and overrides are in each file)."]
    return "\n".join(lines) + "\n"


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sets", nargs="+", default=SETS, help=f"default: all ({', '.join(SETS)}); also "
                        f"saranoos-N-sS, Sara without out_of_scope")
    parser.add_argument("--models", default=",".join(MODELS),
                        help="diet alone trains and scores DIET only; bilstm or tinybert alone distils that student "
                             "again for the tag's saved results (after a change to its defaults)")
    parser.add_argument("--tag", default="defaults", help="name of a variant (results and work folders)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a distillation setting")
    parser.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "datasets")
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "fewshot")
    parser.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results" / "fewshot")
    parser.add_argument("--latency-sentences", type=int, default=200,
                        help="timed one-sentence calls per model, drawn from the whole test file in a seeded order")
    parser.add_argument("--skip-done", action="store_true", help="skip sets whose result file exists")
    parser.add_argument("--progress", action="store_true")
    parser.add_argument("--report", action="store_true", help="only write the table of the saved results")
    parser.add_argument("--time", action="store_true",
                        help="time the saved models of each set (run it alone: other work on the machine skews latency)")
    parser.add_argument("--quick", action="store_true",
                        help="a BiLSTM only: test accuracy and the like, for comparing settings")
    parser.add_argument("--diet-from", metavar="TAG",
                        help="take DIET's scores from this tag's result of each set instead of training it again "
                             "(DIET does not depend on rasa-kd's settings)")
    parser.add_argument("--teacher-from", metavar="TAG", help="--quick: reuse the teacher of this tag's run of the set")
    args = parser.parse_args(argv)

    from rasa_kd.distill.config import parse_override

    overrides = {}
    for item in args.set:
        keys, value = parse_override(item)
        overrides[".".join(keys)] = value
    if not args.report:
        for name in args.sets:
            if args.models == "diet":
                files = prepare(name, args.data_dir, args.work.resolve())
                diet = train_diet(name, files, (args.work / "diet" / name).resolve(), DIET_EPOCHS, splits=["test"])
                print(f"{name} DIET test accuracy {100 * diet['scores']['test']['accuracy']:.1f} "
                      f"({diet['train_seconds'] or 0:.0f} s training)", flush=True)
                continue
            target = args.results / ("quick" if args.quick else "") / args.tag / f"{name}.json"
            if args.models in ("bilstm", "tinybert"):
                result = redo_student(name, args, overrides, args.models)
                write_json(target, result)
                print(f"{name} {args.models} test accuracy {100 * result['models'][args.models]['accuracy']:.1f}", flush=True)
                continue
            if args.time:
                if target.is_file():
                    write_json(target, time_set(read_json(target), args.latency_sentences))
                    print(f"timed {name}", flush=True)
                continue
            if args.skip_done and target.is_file():
                continue
            result = quick_set(name, args, overrides) if args.quick else run_set(name, args, overrides)
            target.parent.mkdir(parents=True, exist_ok=True)
            write_json(target, result)
            if args.quick:
                print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in result.items()}), flush=True)
            else:
                print(json.dumps({k: round(v["accuracy"] * 100, 1) for k, v in result["models"].items()}), flush=True)
    if (args.results / args.tag).is_dir() and not args.quick:
        write_text(args.results / f"{args.tag}.md", report(args.results, args.tag))
        print(f"wrote {args.results / f'{args.tag}.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

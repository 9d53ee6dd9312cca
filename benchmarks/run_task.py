"""One benchmark task end to end: convert the public data, distil a BiLSTM and a tiny-BERT student
from the teacher, train Rasa's DIETClassifier (default NLU pipeline) with `rasa train nlu`, score all
four, and measure parameters, size and CPU latency of all four in one process.

    .venv/bin/python benchmarks/run_task.py --task sara       # sara | sst2 | cola | trec | snips
    .venv/bin/python benchmarks/run_all.py                    # every task, then the report

Results: benchmarks/results/task-TASK.json (benchmarks/report.py turns them into RESULTS.md).
Work files: runs/bench/TASK/. Settings: configs/distill/TASK.yml plus the scaled-down overrides
below, written into the result.
"""
import argparse
import asyncio
import datetime
import os
import platform
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional

os.environ["RASA_TELEMETRY_ENABLED"] = "false"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from rasa_kd.openblas import choose_kernels  # noqa: E402

choose_kernels()  # before NumPy loads: kernels this CPU runs well (rasa_kd/openblas.py)

import yaml  # noqa: E402

from rasa_kd.data.convert import convert_dataset  # noqa: E402
from rasa_kd.data.nlu_yaml import load_intent_examples  # noqa: E402
from rasa_kd.io_utils import read_json, write_json  # noqa: E402
from rasa_kd.distill.evaluate import classification_scores  # noqa: E402
from rasa_kd.provenance import package_versions  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
from rasa_process import run_rasa  # noqa: E402  (scripts/rasa_process.py)

# How each task's data is converted, which splits are scored, and its metric (as in the thesis).
TASKS = {
    "sara": {"convert": [("sara", "sara/thesis_tsv", {})], "splits": ["dev", "test"], "metric": "micro_f1"},
    "sst2": {"convert": [("sst2", "sst2/glue", {}), ("sst2-sentences", "sst2/sentence_level", {"only": "test"})],
             "splits": ["dev", "test"], "metric": "accuracy"},
    "cola": {"convert": [("cola", "cola", {})], "splits": ["dev"], "metric": "mcc"},
    "trec": {"convert": [("trec", "trec", {"dev_size": 500})], "splits": ["test"], "metric": "accuracy"},
    "snips": {"convert": [("snips", "snips", {})], "splits": ["test"], "metric": "accuracy"},
}
# Rasa's default DIETClassifier trains 100 epochs; on the large training sets that alone would take
# hours on 2 cores, so it is cut there (stated in the results).
DIET_EPOCHS = {"sara": 100, "trec": 100, "snips": 40, "cola": 40, "sst2": 10}
# tiny-BERT epochs are capped so a task fits in about an hour on 2 cores: 10, fewer on the large
# transfer sets of CoLA (171k sentences) and SST-2 (134k) (stated in the results as an override).
TINYBERT_EPOCHS = {"sara": 10, "trec": 10, "snips": 10, "cola": 5, "sst2": 4}


def prepare_data(task: str, data_dir: Path, work: Path, limit: Optional[int]) -> Dict[str, str]:
    """Converted Rasa YAML files of the task: split -> path."""
    folder = work / "data"
    files: Dict[str, str] = {}
    for fmt, source, options in TASKS[task]["convert"]:
        only = options.get("only")
        out = folder / fmt
        if not (out / "dataset.json").is_file():
            convert_dataset(fmt, data_dir / source, out, overwrite=True, dev_size=options.get("dev_size"))
        for split in ("train", "dev", "test"):
            if (out / f"{split}.yml").is_file() and (only is None or split == only) and split not in files:
                files[split] = str(out / f"{split}.yml")
    if limit:  # smoke runs: the first examples of each intent, up to `limit` per split
        from rasa_kd.data.nlu_yaml import dump_nlu_yaml

        small = folder / f"limit-{limit}"
        small.mkdir(parents=True, exist_ok=True)
        for split, path in list(files.items()):
            pairs = load_intent_examples(Path(path))[:limit]
            grouped: Dict[str, List[str]] = {}
            for text, intent in pairs:
                grouped.setdefault(intent, []).append(text)
            dump_nlu_yaml(small / f"{split}.yml", grouped)
            files[split] = str(small / f"{split}.yml")
    return files


def distil(task: str, files: Dict[str, str], work: Path, overrides: dict, progress: bool) -> Dict[str, dict]:
    """BiLSTM first (it fine-tunes the teacher), then tiny-BERT from the same teacher and logits."""
    from rasa_kd.distill import pipeline
    from rasa_kd.distill.config import load_config

    data = {f"data.{split}": path for split, path in files.items()}
    cache = str(work / "cache")
    results = {}
    for kind in ("bilstm", "tinybert"):
        extra = {**data, "student.type": kind, "labelling.cache_dir": cache, **overrides.get("all", {}), **overrides.get(kind, {})}
        if kind == "tinybert":
            extra["teacher.path"] = str(work / "bilstm" / "teacher")
        config = load_config(ROOT / "configs" / "distill" / f"{task}.yml", extra)
        print(f"-- {task}: distilling the {kind} student", flush=True)
        started = time.perf_counter()
        metrics = pipeline.distill(config, work / kind, progress=progress)
        metrics["wall_seconds"] = time.perf_counter() - started
        results[kind] = metrics
    return results


def train_diet(task: str, files: Dict[str, str], work: Path, epochs: int, splits: Optional[List[str]] = None) -> dict:
    """Rasa's default NLU pipeline, trained by `rasa train nlu` and scored by `rasa test nlu` on ``splits``
    (default: the task's)."""
    folder = work / "diet"
    folder.mkdir(parents=True, exist_ok=True)
    config = yaml.safe_load((ROOT / "example_bot" / "config-diet.yml").read_text())
    config.pop("policies", None)
    config["assistant_id"] = f"rasa-kd-bench-{task}-diet"
    # The default pipeline's FallbackClassifier turns answers below 0.3 confidence into nlu_fallback,
    # which `rasa test nlu` scores as wrong; the students have no fallback, so it is left out and
    # DIET is scored on its own best intent.
    config["pipeline"] = [c for c in config["pipeline"] if c["name"] != "FallbackClassifier"]
    for component in config["pipeline"]:
        if component["name"] == "DIETClassifier":
            component["epochs"] = epochs
    (folder / "config.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    archive = folder / "models" / "diet.tar.gz"
    timing = folder / "train_seconds.json"  # kept beside the archive, so a rerun that reuses it still reports it
    seconds = read_json(timing)["seconds"] if archive.is_file() and timing.is_file() else None
    if not archive.is_file():
        print(f"-- {task}: rasa train nlu with DIET ({epochs} epochs)", flush=True)
        started = time.perf_counter()
        run_rasa(["train", "nlu", "--config", "config.yml", "--nlu", files["train"], "--out", "models",
                  "--fixed-model-name", "diet"], cwd=folder)
        seconds = time.perf_counter() - started
        write_json(timing, {"seconds": seconds})
    scores = {}
    for split in splits or TASKS[task]["splits"]:
        out = folder / "results" / split
        run_rasa(["test", "nlu", "--nlu", files[split], "--model", str(archive), "--out", str(out), "--successes",
                  "--no-plot"], cwd=folder)
        rows = [r for name in ("intent_successes.json", "intent_errors.json") if (out / name).is_file() for r in read_json(out / name)]
        scores[split] = classification_scores([r["intent"] for r in rows], [r["intent_prediction"]["name"] for r in rows])
    return {"archive": str(archive), "epochs": epochs, "train_seconds": seconds, "scores": scores,
            "size_bytes": archive.stat().st_size}


class DietRunner:
    """DIET behind Rasa's own graph, in process: what `rasa run` computes for /model/parse."""

    def __init__(self, archive: Path):
        from rasa.core.agent import load_agent

        self.agent = asyncio.run(load_agent(model_path=str(archive)))
        self.processor = self.agent.processor
        diet = [node._component for node in self.processor.graph_runner._instantiated_nodes.values()
                if type(getattr(node, "_component", None)).__name__ == "DIETClassifier"]
        self.params = int(diet[0].model.count_params()) if diet and diet[0].model is not None else 0

    def parse(self, texts: List[str]) -> None:
        from rasa.core.channels.channel import UserMessage
        from rasa.engine.constants import PLACEHOLDER_MESSAGE, PLACEHOLDER_TRACKER
        from rasa.shared.core.trackers import DialogueStateTracker

        messages = [UserMessage(text) for text in texts]
        tracker = DialogueStateTracker("bench", [])
        self.processor.graph_runner.run(inputs={PLACEHOLDER_MESSAGE: messages, PLACEHOLDER_TRACKER: tracker},
                                        targets=[self.processor.model_metadata.nlu_target])


def batch_1_in_blocks(runners: Dict[str, Callable[[List[str]], object]], sentences: List[str], calls: int,
                      block: int = 25) -> Dict[str, List[float]]:
    """Milliseconds of each of ``calls`` one-sentence calls per runner, in blocks that cycle through the runners.

    Blocks, so drift in the machine's speed hits all runners alike. Not one sentence per runner in
    turn: TensorFlow's thread pools keep spinning for a moment after a call (teacher, DIET) and slow
    a NumPy student called right after, which a server holding only the student never sees
    (measured on Sara: BiLSTM 0.65 ms interleaved per sentence, 0.30 ms in blocks), and the cycle's start turns
    from block to block.

    The sentences are taken in a seeded random order, not the file's: test files list an intent's messages
    together, so the first 200 of SNIPS's were two intents of seven, their sentences 17% longer than the
    set's mean, and a BiLSTM's time grows with length where the teacher's barely does.
    """
    order = random.Random(0).sample(range(len(sentences)), len(sentences))
    times: Dict[str, List[float]] = {name: [] for name in runners}
    names = list(runners)
    for number, start in enumerate(range(0, calls, block)):
        # Each block starts the cycle at the next runner: the one after the teacher ran up to a quarter slower
        # for the whole block (a BiLSTM 1.31-1.38 ms against 1.03-1.06 ms later in the cycle, SNIPS), so no
        # model keeps that place.
        for name in names[number % len(names):] + names[:number % len(names)]:
            run = runners[name]
            for i in range(start, min(calls, start + block)):
                text = [sentences[order[i % len(sentences)]]]
                t = time.perf_counter()
                run(text)
                times[name].append((time.perf_counter() - t) * 1000)
    return times


def latencies(work: Path, diet_archive: Optional[Path], sentences: List[str], single: int, batches: int) -> dict:
    """Batch-1 and batch-256 latency of teacher, students and DIET (unless ``diet_archive`` is None),
    interleaved in one process."""
    from rasa_kd.models.student import StudentModel
    from rasa_kd.models.teacher import Teacher

    def batched(model):
        return lambda texts: model.logits(texts, batch_size=256)

    runners = {
        "teacher": batched(Teacher.load(work / "bilstm" / "teacher")),
        "bilstm": batched(StudentModel.load(work / "bilstm" / "student")),
        "tinybert": batched(StudentModel.load(work / "tinybert" / "student")),
    }
    diet = DietRunner(diet_archive) if diet_archive is not None else None
    if diet is not None:
        runners["diet"] = diet.parse
    for run in runners.values():  # warm-up: graphs traced, buffers allocated
        run(sentences[:1])
        run(sentences[:256])
    one = batch_1_in_blocks(runners, sentences, single)
    many = {name: [] for name in runners}
    batch = [sentences[i % len(sentences)] for i in range(256)]
    for _ in range(batches):
        for name, run in runners.items():
            t = time.perf_counter()
            run(batch)
            many[name].append((time.perf_counter() - t) * 1000 / 256)
    return {name: {"batch_1": statistics.median(one[name]), "batch_256_per_example": statistics.median(many[name])}
            for name in runners}, (diet.params if diet is not None else None)


def student_shape(folder: Path) -> str:
    """The student's size in words, from its saved record: "1 x 300 BiLSTM, dense 400" or "4 x 128, 2 heads, intermediate 512"."""
    arch = read_json(folder / "student.json")["architecture"]
    if "hidden_units" in arch:
        return f"{arch['layers']} x {arch['hidden_units']} BiLSTM, dense {arch['dense_units']}"
    return f"{arch['layers']} x {arch['hidden_size']}, {arch['heads']} heads, intermediate {arch['intermediate_size']}"


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", required=True, choices=sorted(TASKS))
    parser.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "datasets")
    parser.add_argument("--work", type=Path, help="default: runs/bench/TASK")
    parser.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--limit", type=int, help="smoke run: at most N examples per split")
    parser.add_argument("--set", action="append", default=[], metavar="[bilstm:|tinybert:]KEY=VALUE",
                        help="override a distillation setting for both students or one")
    parser.add_argument("--diet-epochs", type=int, help="override DIET's epochs")
    parser.add_argument("--latency-sentences", type=int, default=200)
    parser.add_argument("--latency-batches", type=int, default=3)
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)

    from rasa_kd.distill.config import parse_override

    overrides: Dict[str, dict] = {"all": {}, "bilstm": {}, "tinybert": {"student.training.epochs": TINYBERT_EPOCHS[args.task]}}
    for item in args.set:
        target, _, setting = item.partition(":") if item.split("=", 1)[0].count(":") else ("all", "", item)
        keys, value = parse_override(setting)
        overrides[target][".".join(keys)] = value

    task = args.task
    work = (args.work or ROOT / "runs" / "bench" / task).resolve()
    started = time.perf_counter()
    files = prepare_data(task, args.data_dir, work, args.limit)
    students = distil(task, files, work, overrides, not args.no_progress)
    diet_epochs = args.diet_epochs or DIET_EPOCHS[task]
    diet = train_diet(task, files, work, diet_epochs)
    sentences = [t for t, _ in load_intent_examples(Path(files[TASKS[task]["splits"][0]]))]
    print(f"-- {task}: latency of all four models", flush=True)
    latency, diet_params = latencies(work, Path(diet["archive"]), sentences, args.latency_sentences, args.latency_batches)

    bilstm, tinybert = students["bilstm"], students["tinybert"]
    metric = TASKS[task]["metric"]
    def summary(metrics: dict) -> dict:
        return {key: metrics[key] for key in ("scores", "params", "size_bytes")}

    models = {
        "teacher": summary(bilstm["teacher"]),
        "bilstm": {**summary(bilstm["student"]), "shape": student_shape(work / "bilstm" / "student")},
        "tinybert": {**summary(tinybert["student"]), "shape": student_shape(work / "tinybert" / "student")},
        "diet": {"scores": diet["scores"], "params": diet_params, "size_bytes": diet["size_bytes"]},
    }
    teacher_latency = latency["teacher"]
    for name, model in models.items():
        model["latency_ms"] = latency[name]
        model["speedup_vs_teacher"] = {k: teacher_latency[k] / latency[name][k] for k in teacher_latency}
        model["retention"] = {s: model["scores"][s][metric] / models["teacher"]["scores"][s][metric]
                              if models["teacher"]["scores"][s][metric] else None for s in TASKS[task]["splits"]}
    stages = {kind: students[kind]["stages"] for kind in students}
    result = {
        "task": task, "metric": metric, "splits": TASKS[task]["splits"],
        "date": datetime.date.today().isoformat(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.platform()}",
        "command": "python benchmarks/run_task.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "versions": package_versions(),
        "data": {split: len(load_intent_examples(Path(path))) for split, path in files.items()},
        "config": f"configs/distill/{task}.yml", "overrides": overrides, "diet_epochs": diet_epochs,
        "transfer_set": bilstm["transfer_set"], "models": models,
        "stage_seconds": {kind: {stage: info["seconds"] for stage, info in s.items()} for kind, s in stages.items()},
        "diet_train_seconds": diet["train_seconds"], "wall_seconds": time.perf_counter() - started,
        "limit": args.limit,
    }
    args.results.mkdir(parents=True, exist_ok=True)
    name = f"task-{task}.json" if not args.limit else f"task-{task}-limit{args.limit}.json"
    write_json(args.results / name, result)
    for model_name, model in models.items():
        scores = ", ".join(f"{split} {100 * model['scores'][split][metric]:.1f}" for split in TASKS[task]["splits"])
        print(f"{task} {model_name:<9} {metric} {scores}; {model['params']:,} params; "
              f"batch-1 {model['latency_ms']['batch_1']:.2f} ms ({model['speedup_vs_teacher']['batch_1']:.1f}x teacher)")
    print(f"saved {args.results / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

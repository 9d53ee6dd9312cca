"""Student training throughput on one device, under MirroredStrategy over 2 logical CPU devices, and as
2 local worker processes (MultiWorkerMirroredStrategy, scripts/launch_workers.py), at the same global
batch; plus the per-step cost of a half batch on one device, which is what each of 2 replicas computes.
Then labelling throughput: one labelling process against two sharing one shard cache.

    .venv/bin/python benchmarks/worker_throughput.py --kinds bilstm tinybert

Default student architectures (the teacher's MiniLM vocabulary and embeddings), random teacher logits
over 57 intents, 4,096 synthetic sentences of 4 to 16 words, batch 64. Seconds per step are the second
epoch's (the first one traces the step). Labelling: the MiniLM teacher (57-intent head), 16,384
sentences in shards of 1,024. Writes benchmarks/results/worker_throughput.json.
"""
import argparse
import datetime
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LABELS = 57


def _sentences(count: int, seed: int = 0):
    import numpy as np

    from streaming_memory import sara_words  # benchmarks/ is on the path of a script run from it

    words = sara_words()
    rng = np.random.default_rng(seed)
    return [" ".join(words[i] for i in rng.integers(0, len(words), size=int(rng.integers(4, 17)))) for _ in range(count)]


def _minilm_teacher():
    from rasa_kd.models import bert
    from rasa_kd.models.teacher import Teacher, TeacherSettings

    labels = [f"intent_{i:02d}" for i in range(LABELS)]
    model_dir = bert.resolve_model_dir(None)
    return Teacher(bert.load_sequence_classifier(model_dir, labels), bert.load_tokenizer(model_dir), labels,
                   TeacherSettings(), {"fingerprint": "throughput-benchmark"})


def label_child(sentences: int, cache: Path, out: Path) -> None:
    """One labelling worker on the shared cache; writes its own wall time."""
    sys.path.insert(0, str(ROOT))
    from rasa_kd.distill.labelling import label_transfer_set

    teacher, texts = _minilm_teacher(), _sentences(sentences, seed=1)
    started = time.perf_counter()
    result = label_transfer_set(teacher, texts, cache, shard_size=1024, progress=False, keep_logits=False)
    out.write_text(json.dumps({"seconds": time.perf_counter() - started, "computed_shards": result.computed_shards}))


def labelling_rows(sentences: int, work: Path, env: dict) -> list:
    import shutil

    rows = []
    for workers in (1, 2):
        cache = work / f"label-cache-{workers}"
        shutil.rmtree(cache, ignore_errors=True)
        outs = [work / f"label-{workers}-{i}.json" for i in range(workers)]
        started = time.perf_counter()
        processes = [subprocess.Popen([sys.executable, __file__, "--label-child", str(sentences), str(cache), str(out)], env=env)
                     for out in outs]
        codes = [p.wait() for p in processes]
        wall = time.perf_counter() - started
        if any(codes):
            sys.exit(f"labelling with {workers} workers failed (exit codes {codes})")
        parts = [json.loads(out.read_text()) for out in outs]
        # Wall time includes each process's start (TensorFlow import, teacher load); labelling time is the slowest worker's.
        row = {"workers": workers, "sentences": sentences, "wall_seconds": round(wall, 1),
               "labelling_seconds": round(max(p["seconds"] for p in parts), 1),
               "shards_by_worker": [p["computed_shards"] for p in parts]}
        rows.append(row)
        print(f"labelling, {workers} worker(s): {row['labelling_seconds']:.1f} s labelling "
              f"({sentences / row['labelling_seconds']:.0f} sentences/s), shards {row['shards_by_worker']}", flush=True)
    return rows


def _train(kind: str, strategy, batch_size: int, sentences: int) -> dict:
    sys.path.insert(0, str(ROOT))
    import numpy as np

    from rasa_kd.distill import distribute
    from rasa_kd.distill.config import StudentTrainingSettings
    from rasa_kd.distill.student_training import train_student
    from rasa_kd.models.architectures import BiLSTMSettings, TinyBertSettings
    from rasa_kd.models.student import new_student

    texts, teacher = _sentences(sentences), _minilm_teacher()
    labels, rng = teacher.labels, np.random.default_rng(0)
    settings = BiLSTMSettings() if kind == "bilstm" else TinyBertSettings()
    with distribute.scope(strategy):
        student, ids = new_student(kind, settings, teacher, texts, seed=1)
    logits = rng.normal(size=(sentences, LABELS)).astype(np.float32)
    training = StudentTrainingSettings(epochs=2, batch_size=batch_size)
    record = train_student(student, student.vocab.map(ids), logits, np.full(sentences, -1, np.int32), student.encode(texts[:64]),
                           [labels[0]] * 64, training, None, progress=False, strategy=strategy)
    steps = -(-sentences // batch_size)
    return {"kind": kind, "params": student.parameter_count(), "batch_size": batch_size,
            "replicas": strategy.num_replicas_in_sync if strategy is not None else 1,
            "seconds_per_step": record.epochs[1].seconds / steps}


def child(mode: str, kind: str, batch_size: int, sentences: int, out: Path) -> None:
    sys.path.insert(0, str(ROOT))
    from rasa_kd.distill import distribute

    if mode == "mirrored":
        strategy = distribute.make_strategy("mirrored", cpu_replicas=2)
    elif mode == "multi_worker":
        strategy = distribute.make_strategy("multi_worker")
    else:
        strategy = None
    started = time.perf_counter()
    result = {"mode": mode, **_train(kind, strategy, batch_size, sentences), "wall_seconds": 0.0}
    result["wall_seconds"] = round(time.perf_counter() - started, 1)
    if distribute.is_chief(strategy):
        out.write_text(json.dumps(result), encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kinds", nargs="+", default=["bilstm", "tinybert"], choices=["bilstm", "tinybert"])
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--sentences", type=int, default=4096)
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "results" / "worker_throughput.json")
    parser.add_argument("--labelling-sentences", type=int, default=16384, help="0: skip the labelling comparison")
    parser.add_argument("--child", nargs=3, metavar=("MODE", "KIND", "OUT"), help=argparse.SUPPRESS)
    parser.add_argument("--label-child", nargs=3, metavar=("SENTENCES", "CACHE", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.label_child:
        label_child(int(args.label_child[0]), Path(args.label_child[1]), Path(args.label_child[2]))
        return
    if args.child:
        child(args.child[0], args.child[1], args.batch_size, args.sentences, Path(args.child[2]))
        return
    sys.path.insert(0, str(ROOT / "scripts"))
    from launch_workers import launch

    env = {**os.environ, "RASA_TELEMETRY_ENABLED": "false", "TF_CPP_MIN_LOG_LEVEL": "2"}
    work = Path("/tmp/rasa-kd-throughput")
    work.mkdir(exist_ok=True)
    rows = []
    for kind in args.kinds:
        runs = [("one_device", args.batch_size), ("one_device", args.batch_size // 2), ("mirrored", args.batch_size),
                ("multi_worker", args.batch_size)]
        for mode, batch in runs:
            out = work / f"{kind}-{mode}-{batch}.json"
            out.unlink(missing_ok=True)
            command = [sys.executable, __file__, "--batch-size", str(batch), "--sentences", str(args.sentences), "--child", mode, kind, str(out)]
            if mode == "multi_worker":
                os.environ.update(env)
                code = launch(command, 2, work / "logs", timeout=3600)
            else:
                code = subprocess.run(command, env=env).returncode
            if code or not out.is_file():
                sys.exit(f"{kind} {mode} batch {batch} failed (exit {code})")
            row = json.loads(out.read_text(encoding="utf-8"))
            rows.append(row)
            print(f"{kind:8s} {mode:12s} batch {batch:3d} x{row['replicas']}: {1000 * row['seconds_per_step']:7.1f} ms/step, "
                  f"{batch / row['seconds_per_step']:7.0f} sentences/s", flush=True)
    labelling = labelling_rows(args.labelling_sentences, work, env) if args.labelling_sentences else []
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps({"date": datetime.date.today().isoformat(), "command": " ".join(sys.argv),
                                       "sentences": args.sentences, "rows": rows, "labelling": labelling}, indent=2) + "\n",
                           encoding="utf-8")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()

"""Peak memory and wall time of labelling and of one student epoch as the transfer set grows tenfold,
streamed from disk (``compute.stream_from``) against held in memory.

    .venv/bin/python benchmarks/streaming_memory.py --sizes 100000 1000000

Each (mode, stage, size) runs in its own process, which reports its resident memory before the stage
(TensorFlow and the models loaded) and its peak (VmHWM). The transfer set is synthetic: 4 to 16 words
drawn from Sara's training sentences, in the real teacher's WordPiece vocabulary (MiniLM, 30,522
WordPieces) and 57 intents. The teacher is a random 2-layer, 128-wide BERT over that vocabulary and the
student a BiLSTM of 64 units: this measures the data path, and keeps a million-sentence epoch within
minutes on 2 cores (a full-size teacher's labelling time scales with its per-sentence cost, not
measured here). Writes benchmarks/results/streaming_memory.json.
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
SHARED = ROOT.parent / "shared" / "datasets"
LABELS = 57
SHARD = 4096


def sara_words() -> list:
    """The distinct words of Sara's training sentences (thesis TSV), sorted: the synthetic sets' vocabulary."""
    return sorted({w for line in (SHARED / "sara" / "thesis_tsv" / "train.tsv").read_text(encoding="utf-8").splitlines()
                   for w in line.split("\t")[-1].lower().split()})


def _rss_mb(field: str) -> float:
    with open("/proc/self/status", encoding="utf-8") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024.0
    raise RuntimeError(f"no {field} in /proc/self/status")


def _teacher(work: Path):
    from rasa_kd.models import bert
    from rasa_kd.models.teacher import Teacher, TeacherSettings

    labels = [f"intent_{i:02d}" for i in range(LABELS)]
    model = bert.load_sequence_classifier(work / "teacher_bert", labels)
    tokenizer = bert.load_tokenizer(bert.resolve_model_dir(None))
    return Teacher(model, tokenizer, labels, TeacherSettings(max_seq_length=64), {"fingerprint": "streaming-benchmark"})


def child(mode: str, stage: str, size: int, work: Path) -> dict:
    """One measurement, in this process."""
    sys.path.insert(0, str(ROOT))
    import numpy as np

    from rasa_kd.distill.config import StudentTrainingSettings
    from rasa_kd.distill.labelling import label_transfer_set
    from rasa_kd.distill.streaming import ShardStream, TransferSetFile, token_shards
    from rasa_kd.distill.student_training import train_student
    from rasa_kd.distill.transfer_set import TransferSet
    from rasa_kd.models.architectures import BiLSTMSettings
    from rasa_kd.models.student import new_student

    teacher = _teacher(work)
    path, cache = work / f"transfer-{size}.jsonl", work / f"cache-{mode}-{size}"
    student_settings = BiLSTMSettings(hidden_units=64, dense_units=64, max_seq_length=64)
    training = StudentTrainingSettings(epochs=1, batch_size=64)
    dev_texts = [f"dev sentence {i}" for i in range(200)]
    dev_gold = [teacher.labels[i % LABELS] for i in range(200)]
    before = _rss_mb("VmRSS")
    started = time.perf_counter()
    if stage == "label":
        texts = TransferSetFile(path) if mode == "streamed" else TransferSet.load(path).texts
        result = label_transfer_set(teacher, texts, cache, batch_size=128, shard_size=SHARD, progress=False,
                                    keep_logits=mode != "streamed")
        done = {"computed_shards": result.computed_shards}
    elif mode == "streamed":
        tokens = token_shards(TransferSetFile(path), teacher, 64, False, SHARD, cache, progress=False)
        logits_folder = next(cache.glob("logits-*"))
        student, _ = new_student("bilstm", student_settings, teacher, None, 1, used=tokens.used)
        record = train_student(student, None, None, None, student.encode(dev_texts), dev_gold, training, None, progress=False,
                               stream=ShardStream(tokens, logits_folder, LABELS, training.batch_size))
        done = {"steps": record.steps, "training_seconds": round(record.seconds, 1)}
    else:
        transfer = TransferSet.load(path)
        logits = label_transfer_set(teacher, transfer.texts, cache, shard_size=SHARD, progress=False).logits  # cached: read
        student, ids = new_student("bilstm", student_settings, teacher, transfer.texts, 1)
        gold = np.full(len(transfer), -1, dtype=np.int32)
        record = train_student(student, student.vocab.map(ids), logits, gold, student.encode(dev_texts), dev_gold, training, None,
                               progress=False)
        done = {"steps": record.steps, "training_seconds": round(record.seconds, 1)}
    return {"mode": mode, "stage": stage, "sentences": size, "seconds": round(time.perf_counter() - started, 1),
            "rss_before_mb": round(before, 1), "peak_rss_mb": round(_rss_mb("VmHWM"), 1), **done}


def prepare(work: Path, sizes) -> None:
    """The random teacher BERT (saved once) and a synthetic transfer set of each size."""
    sys.path.insert(0, str(ROOT))
    import numpy as np
    from transformers import BertConfig, TFBertForSequenceClassification

    from rasa_kd.models import bert

    if not (work / "teacher_bert" / "config.json").is_file():
        tokenizer = bert.load_tokenizer(bert.resolve_model_dir(None))
        config = BertConfig(vocab_size=len(tokenizer), hidden_size=128, num_hidden_layers=2, num_attention_heads=2,
                            intermediate_size=256, num_labels=LABELS)
        model = TFBertForSequenceClassification(config)
        model(model.dummy_inputs)
        model.save_pretrained(work / "teacher_bert")
        tokenizer.save_pretrained(work / "teacher_bert")
    words = sara_words()
    rng = np.random.default_rng(0)
    for size in sizes:
        path = work / f"transfer-{size}.jsonl"
        if path.is_file():
            continue
        with open(path.with_suffix(".tmp"), "w", encoding="utf-8") as out:
            for start in range(0, size, 10000):
                count = min(10000, size - start)
                lengths = rng.integers(4, 17, size=count)
                picks = rng.integers(0, len(words), size=int(lengths.sum()))
                position = 0
                for length in lengths:
                    text = " ".join(words[i] for i in picks[position : position + length])
                    position += length
                    out.write(json.dumps({"text": text, "source": "rules", "intent": None}) + "\n")
        path.with_suffix(".tmp").rename(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--modes", nargs="+", default=["streamed", "in_memory"], choices=["streamed", "in_memory"])
    parser.add_argument("--work", type=Path, default=Path("/tmp/rasa-kd-streaming-benchmark"))
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "results" / "streaming_memory.json")
    parser.add_argument("--child", nargs=3, metavar=("MODE", "STAGE", "SIZE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child[0], args.child[1], int(args.child[2]), args.work)))
        return
    args.work.mkdir(parents=True, exist_ok=True)
    prepare(args.work, args.sizes)
    env = {**os.environ, "RASA_TELEMETRY_ENABLED": "false", "TF_CPP_MIN_LOG_LEVEL": "2"}
    rows = []
    for mode in args.modes:
        for size in args.sizes:
            for stage in ("label", "student_epoch"):
                done = subprocess.run([sys.executable, __file__, "--work", str(args.work), "--child", mode, stage, str(size)],
                                      env=env, capture_output=True, text=True)
                if done.returncode:
                    sys.exit(f"{mode} {stage} {size} failed:\n{done.stderr[-3000:]}")
                row = json.loads(done.stdout.strip().splitlines()[-1])
                rows.append(row)
                print(f"{mode:9s} {stage:13s} {size:>9,d} sentences: {row['seconds']:8.1f} s, "
                      f"RSS {row['rss_before_mb']:7.0f} MB before, peak {row['peak_rss_mb']:7.0f} MB", flush=True)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps({"date": datetime.date.today().isoformat(), "command": " ".join(sys.argv),
                                       "shard_size": SHARD, "rows": rows}, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()

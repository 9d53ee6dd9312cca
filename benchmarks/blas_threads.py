"""Batch-1 latency of a NumPy student with BLAS on all threads versus one, idle and on a busy machine.

The `blas_threads` setting of the student classifiers exists because of this trade-off: two BLAS
threads are faster while the machine is idle, and much slower in the tail when other processes keep
every core busy (a BLAS thread then waits for a core). "Busy" here is one process per core running
large matrix products.

    .venv/bin/python benchmarks/blas_threads.py runs/serving/distill/bilstm/student [more student folders]

Results: benchmarks/results/blas_threads.json and .md.
"""
import argparse
import datetime
import multiprocessing
import os
import sys
import time
from pathlib import Path
from typing import List

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rasa_kd.openblas import choose_kernels  # noqa: E402

choose_kernels()  # before NumPy loads: kernels this CPU runs well (rasa_kd/openblas.py)

import numpy as np  # noqa: E402

from rasa_kd.io_utils import write_json, write_text  # noqa: E402

SENTENCES = ["hello, is anyone there", "my rear wheel wobbles, can you fix it on friday?", "bye for now",
             "how much would new brake pads be", "please cancel my appointment for tomorrow"]


def _hog(stop) -> None:
    a = np.random.default_rng(0).normal(size=(512, 512)).astype(np.float32)
    while not stop.is_set():
        a = np.tanh(a @ a)


def measure(student, repeats: int) -> dict:
    ids = student.encode(SENTENCES)
    times: List[float] = []
    for _ in range(repeats):
        for one in ids:
            started = time.perf_counter()
            student.logits_of_ids([one])
            times.append(time.perf_counter() - started)
    ms = np.array(times) * 1000
    return {"p50_ms": round(float(np.median(ms)), 3), "p99_ms": round(float(np.percentile(ms, 99)), 3),
            "max_ms": round(float(ms.max()), 3), "calls": len(times)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("students", nargs="+", type=Path)
    parser.add_argument("--repeats", type=int, default=400, help="passes over the sentences per measurement")
    parser.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()

    from rasa_kd.models.student import StudentModel

    rows = []
    for folder in args.students:
        student = StudentModel.load(folder)
        for load in ("idle", "busy"):
            stop = multiprocessing.Event()
            hogs = [multiprocessing.Process(target=_hog, args=(stop,), daemon=True) for _ in range(os.cpu_count() if load == "busy" else 0)]
            for hog in hogs:
                hog.start()
            try:
                time.sleep(0.5 if hogs else 0)
                for threads in (None, 1):
                    student.blas_threads = threads
                    measure(student, 20)  # warm-up
                    result = measure(student, args.repeats)
                    rows.append({"student": str(folder), "kind": student.kind, "machine": load,
                                 "blas_threads": threads or "all", **result})
                    print(rows[-1], flush=True)
            finally:
                stop.set()
                for hog in hogs:
                    hog.join(10)
    record = {"date": datetime.date.today().isoformat(), "cpu_count": os.cpu_count(),
              "command": "python benchmarks/blas_threads.py " + " ".join(map(str, args.students)), "rows": rows}
    write_json(args.results / "blas_threads.json", record)
    lines = [f"# BLAS threads of the NumPy students ({record['date']}, {os.cpu_count()} cores)", "",
             f"`{record['command']}`", "", "| student | machine | BLAS threads | p50 ms | p99 ms | max ms |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['kind']} | {r['machine']} | {r['blas_threads']} | {r['p50_ms']} | {r['p99_ms']} | {r['max_ms']} |" for r in rows]
    write_text(args.results / "blas_threads.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())

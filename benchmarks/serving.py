"""Serving benchmark: /model/parse latency of every classifier behind a real `rasa run`.

On the example bot (10 intents), in one run and on 127.0.0.1 only:
  floor      WhitespaceTokenizer alone: Rasa's own HTTP and graph work, no classifier
  diet       Rasa's default NLU pipeline (config-diet.yml)
  teacher    rasa_kd.BertIntentClassifier (config.yml)
  bilstm     rasa_kd.StudentIntentClassifier with a distilled BiLSTM
  tinybert   rasa_kd.StudentIntentClassifier with a distilled tiny-BERT
Each is served by its own `rasa run --enable-api`; only one runs at a time (the others paused),
and blocks of requests cycle through the models, so drift in the machine's speed hits every model
alike (p50, p99, requests/s of one client, one request in flight). Then 32 concurrent clients hit the BiLSTM student for
30 s (errors, p50, p99, requests/s). Finally, the time of one message inside each classifier is
split into tokenization, model and Rasa's `process` glue.

    .venv/bin/python benchmarks/serving.py [--requests 500] [--concurrency 32] [--seconds 30]

Results: benchmarks/results/serving.json and serving.md.
"""
import argparse
import datetime
import os
import platform
import statistics
import sys
import threading
import time
from pathlib import Path

os.environ["RASA_TELEMETRY_ENABLED"] = "false"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from rasa_kd.openblas import choose_kernels  # noqa: E402

choose_kernels()  # before NumPy loads: kernels this CPU runs well (rasa_kd/openblas.py)

import yaml  # noqa: E402

from rasa_kd.io_utils import write_json, write_text  # noqa: E402
from rasa_kd.provenance import package_versions  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
from rasa_process import rasa_server, run_rasa  # noqa: E402  (scripts/rasa_process.py)
BOT = ROOT / "example_bot"
WORK = ROOT / "runs" / "serving"
SENTENCES = [
    "hello, is anyone there",
    "my rear wheel wobbles, can you fix it on friday?",
    "is my bike ready for pick up",
    "how much would new brake pads be",
    "are you open on saturday morning",
    "where do I find your workshop",
    "please cancel my appointment for tomorrow",
    "am I talking to a real person?",
    "thanks a million, that was helpful",
    "bye for now",
]


def pipeline_config(name: str, pipeline: list) -> Path:
    config = {"recipe": "default.v1", "language": "en", "assistant_id": f"rasa-kd-serving-{name}", "pipeline": pipeline}
    path = WORK / f"config-{name}.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def train(name: str, config: Path) -> Path:
    archive = WORK / "models" / f"{name}.tar.gz"
    if not archive.is_file():
        print(f"-- rasa train nlu: {name}", flush=True)
        run_rasa(["train", "nlu", "--config", str(config), "--nlu", str(BOT / "data" / "nlu.yml"),
                  "--out", str(WORK / "models"), "--fixed-model-name", name], cwd=WORK)
    return archive


def distil(kind: str, teacher: Path) -> Path:
    from rasa_kd.distill import pipeline
    from rasa_kd.distill.config import load_config

    out = WORK / "distill" / kind
    if not (out / "student" / "student.json").is_file():
        print(f"-- rasa-kd distill: {kind}", flush=True)
        overrides = {"data.train": str(BOT / "data" / "nlu.yml"), "data.test": str(BOT / "tests" / "test_nlu.yml"),
                     "teacher.path": str(teacher), "student.type": kind}
        if kind == "tinybert":
            overrides["student.training.epochs"] = 15
        pipeline.distill(load_config(ROOT / "configs" / "distill" / "example_bot.yml", overrides), out, progress=False)
    return out / "student"


def interleaved(archives: dict, count: int, block: int = 50):
    """Serve every model, but let only one server run at a time (the others are paused with
    SIGSTOP: idle Rasa servers still take CPU from each other on 2 cores). Blocks of ``block``
    requests cycle through the models, so drift in the machine's speed hits every model alike."""
    import contextlib
    import signal

    with contextlib.ExitStack() as stack:
        servers = {}
        for name, archive in archives.items():
            print(f"-- starting rasa run for {name}", flush=True)
            servers[name] = stack.enter_context(rasa_server(archive, cwd=WORK))
            for text in SENTENCES * 2:  # warm-up: every code path traced, every buffer allocated
                servers[name].parse(text)
            servers[name].process.send_signal(signal.SIGSTOP)
        stack.callback(lambda: [s.process.send_signal(signal.SIGCONT) for s in servers.values()])
        latencies = {name: [] for name in servers}
        print(f"-- {count} requests per model in blocks of {block}, one server running at a time", flush=True)
        done = 0
        while done < count:
            size = min(block, count - done)
            for name, server in servers.items():
                server.process.send_signal(signal.SIGCONT)
                for text in SENTENCES[:3]:  # wake the process up again
                    server.parse(text)
                for i in range(done, done + size):
                    t = time.perf_counter()
                    server.parse(SENTENCES[i % len(SENTENCES)])
                    latencies[name].append((time.perf_counter() - t) * 1000)
                server.process.send_signal(signal.SIGSTOP)
            done += size
    return {name: {**percentiles(values), "requests_per_second": 1000 * len(values) / sum(values), "requests": len(values)}
            for name, values in latencies.items()}


def percentiles(latencies):
    ordered = sorted(latencies)
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))]  # noqa: E731
    return {"p50": statistics.median(ordered), "p90": pick(0.90), "p99": pick(0.99), "max": ordered[-1]}


def concurrent_load(server, clients: int, seconds: float) -> dict:
    """``clients`` threads post in a loop until ``seconds`` pass; every error is counted."""
    deadline = time.monotonic() + seconds
    latencies, errors, lock = [], [], threading.Lock()

    def client(index: int) -> None:
        i = index
        while time.monotonic() < deadline:
            text = SENTENCES[i % len(SENTENCES)]
            i += 1
            t = time.perf_counter()
            try:
                answer = server.parse(text, timeout=30)
                ok = answer.get("intent", {}).get("name") is not None
            except Exception as error:  # noqa: BLE001 - every failure is a finding
                ok, answer = False, repr(error)
            elapsed = (time.perf_counter() - t) * 1000
            with lock:
                (latencies.append(elapsed) if ok else errors.append(str(answer)[:200]))

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=seconds + 60)
    wall = time.perf_counter() - started
    return {"clients": clients, "seconds": round(wall, 1), "requests": len(latencies) + len(errors),
            "errors": len(errors), "error_examples": errors[:5], "requests_per_second": len(latencies) / wall,
            "latency_ms": percentiles(latencies) if latencies else {}, "server_alive": server.process.poll() is None}


def inside_the_classifier(teacher_archive: Path, students: dict, repeats: int = 300) -> dict:
    """Per message: tokenization, the model call, and the whole component.process (one message)."""
    import tarfile
    import tempfile

    from rasa.shared.nlu.training_data.message import Message

    from rasa_kd.components.common import set_intents
    from rasa_kd.models.student import StudentModel
    from rasa_kd.models.teacher import Teacher

    models = {}
    with tempfile.TemporaryDirectory() as scratch, tarfile.open(teacher_archive) as tar:
        members = [m for m in tar.getmembers() if "/teacher/" in m.name]
        tar.extractall(scratch, members=members)
        models["teacher"] = Teacher.load(next(Path(scratch).rglob("rasa_kd.json")).parent)
    for kind, folder in students.items():
        models[kind] = StudentModel.load(folder)

    def clock(fn):
        fn()
        times = []
        for i in range(repeats):
            t = time.perf_counter()
            fn(i)
            times.append((time.perf_counter() - t) * 1000)
        return statistics.median(times)

    result = {}
    for name, model in models.items():
        ids = [model.encode([s])[0] for s in SENTENCES]
        result[name] = {
            "tokenize_ms": clock(lambda i=0: model.encode([SENTENCES[i % len(SENTENCES)]])),
            "model_ms": clock(lambda i=0: model.logits_of_ids([ids[i % len(ids)]])),
            "process_ms": clock(lambda i=0: set_intents([Message.build(text=SENTENCES[i % len(SENTENCES)])],
                                                        model.encode, model.logits_of_ids, model.labels, 10)),
            "runtime": getattr(model, "runtime", "tensorflow"),
        }
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=500, help="sequential timed requests per model")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=30.0)
    args = parser.parse_args()
    (WORK / "models").mkdir(parents=True, exist_ok=True)

    teacher = train("teacher", BOT / "config.yml")
    students = {kind: distil(kind, teacher) for kind in ("bilstm", "tinybert")}
    archives = {
        "floor": train("floor", pipeline_config("floor", [{"name": "WhitespaceTokenizer"}])),
        "diet": train("diet", BOT / "config-diet.yml"),
        "teacher": teacher,
        "bilstm": train("bilstm", pipeline_config("bilstm", [{"name": "rasa_kd.StudentIntentClassifier", "student_path": str(students["bilstm"])}])),
        "tinybert": train("tinybert", pipeline_config("tinybert", [{"name": "rasa_kd.StudentIntentClassifier", "student_path": str(students["tinybert"])}])),
    }
    sequential = interleaved(archives, args.requests)
    with rasa_server(archives["bilstm"], cwd=WORK) as server:
        print(f"-- {args.concurrency} concurrent clients for {args.seconds:.0f} s against the BiLSTM student", flush=True)
        load = concurrent_load(server, args.concurrency, args.seconds)
    floor = sequential["floor"]["p50"]
    ratios = {
        "bilstm_p50_over_floor_p50": sequential["bilstm"]["p50"] / floor,
        "teacher_p50_over_bilstm_p50": sequential["teacher"]["p50"] / sequential["bilstm"]["p50"],
        "teacher_p50_over_tinybert_p50": sequential["teacher"]["p50"] / sequential["tinybert"]["p50"],
        "diet_p50_over_bilstm_p50": sequential["diet"]["p50"] / sequential["bilstm"]["p50"],
        "diet_p50_over_tinybert_p50": sequential["diet"]["p50"] / sequential["tinybert"]["p50"],
    }
    breakdown = inside_the_classifier(teacher, students)
    result = {
        "benchmark": "serving", "date": datetime.date.today().isoformat(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores", "versions": package_versions(),
        "command": "python benchmarks/serving.py " + " ".join(sys.argv[1:]),
        "bot": "example_bot (10 intents)", "sequential_ms": sequential, "ratios": ratios,
        "concurrent_bilstm": load, "inside_classifier_ms": breakdown,
        "targets": {"bilstm_p50_at_most_2x_floor": ratios["bilstm_p50_over_floor_p50"] <= 2.0,
                    "students_3x_below_teacher": min(ratios["teacher_p50_over_bilstm_p50"], ratios["teacher_p50_over_tinybert_p50"]) >= 3.0,
                    "students_below_diet": min(ratios["diet_p50_over_bilstm_p50"], ratios["diet_p50_over_tinybert_p50"]) > 1.0},
    }
    results = ROOT / "benchmarks" / "results"
    results.mkdir(parents=True, exist_ok=True)
    write_json(results / "serving.json", result)
    lines = [f"# Serving benchmark ({result['date']}, {result['machine']})", "", f"`{result['command']}`", "",
             "| model | p50 ms | p90 ms | p99 ms | requests/s (1 client) |", "|---|---|---|---|---|"]
    for name, s in sequential.items():
        lines.append(f"| {name} | {s['p50']:.2f} | {s['p90']:.2f} | {s['p99']:.2f} | {s['requests_per_second']:.0f} |")
    lines += ["", "Inside the classifier, one message (median ms):", "",
              "| model | runtime | tokenize | model | whole process() |", "|---|---|---|---|---|"]
    for name, b in breakdown.items():
        lines.append(f"| {name} | {b['runtime']} | {b['tokenize_ms']:.3f} | {b['model_ms']:.3f} | {b['process_ms']:.3f} |")
    lines += ["", f"Concurrent: {load['clients']} clients for {load['seconds']} s against the BiLSTM student: "
              f"{load['requests']} requests, {load['errors']} errors, p50 {load['latency_ms'].get('p50', 0):.1f} ms, "
              f"p99 {load['latency_ms'].get('p99', 0):.1f} ms, {load['requests_per_second']:.0f} requests/s; "
              f"server alive afterwards: {load['server_alive']}.", "",
              "Ratios: " + ", ".join(f"{k} {v:.2f}" for k, v in ratios.items()), "",
              "Targets: " + ", ".join(f"{k}: {'met' if v else 'MISSED'}" for k, v in result["targets"].items())]
    write_text(results / "serving.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())

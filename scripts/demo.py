"""The main job on the embedded default (example_bot/, "Spokes"):

1. `rasa train nlu` with the BERT teacher (config.yml), fine-tuned from the packaged MiniLM;
2. `rasa-kd distill` a BiLSTM student from that teacher (configs/distill/example_bot.yml);
3. `rasa train nlu` with the student as a drop-in classifier (config-student.yml);
4. serve each model with `rasa run --enable-api` on 127.0.0.1, send /model/parse requests, and print
   the answers side by side with teacher-vs-student latency; the servers are stopped at the end.
"""
import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ["RASA_TELEMETRY_ENABLED"] = "false"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from rasa_kd.rasa_process import rasa_server, run_rasa  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SENTENCES = [
    "hi there",
    "my rear wheel wobbles, can you fix it on friday?",
    "is my bike ready for pick up",
    "how much would new brake pads be",
    "are you open on saturday morning",
    "where do I find your workshop",
    "please cancel my appointment",
    "am I talking to a real person?",
    "thanks a million",
    "",
]


def step(title: str) -> float:
    print(f"\n== {title}", flush=True)
    return time.perf_counter()


def serve_and_ask(archive: Path, bot: Path, requests: int):
    """Answers to SENTENCES and /model/parse latencies (ms) from a real `rasa run`."""
    with rasa_server(archive, cwd=bot) as server:
        answers = [server.parse(text) for text in SENTENCES]
        for text in SENTENCES[:3]:  # warm-up
            server.parse(text)
        latencies = []
        for i in range(requests):
            start = time.perf_counter()
            server.parse(SENTENCES[i % (len(SENTENCES) - 1)])
            latencies.append((time.perf_counter() - start) * 1000)
    return answers, latencies


def describe(latencies):
    ordered = sorted(latencies)
    return statistics.median(ordered), ordered[int(0.99 * (len(ordered) - 1))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bot", type=Path, default=ROOT / "example_bot", help="the Rasa project")
    parser.add_argument("--requests", type=int, default=200, help="timed /model/parse requests per model")
    args = parser.parse_args()
    bot = args.bot.resolve()
    started = time.perf_counter()

    t = step("1/4 rasa train nlu with the BERT teacher (config.yml)")
    run_rasa(["train", "nlu", "--config", "config.yml", "--out", "models", "--fixed-model-name", "teacher"], cwd=bot, capture=False)
    print(f"teacher trained in {time.perf_counter() - t:.0f} s")

    t = step("2/4 rasa-kd distill: a BiLSTM student from that teacher")
    from rasa_kd.distill import pipeline
    from rasa_kd.distill.config import load_config

    config = load_config(ROOT / "configs" / "distill" / "example_bot.yml", {
        "data.train": str(bot / "data" / "nlu.yml"), "data.test": str(bot / "tests" / "test_nlu.yml"),
        "teacher.path": str(bot / "models" / "teacher.tar.gz")})
    metrics = pipeline.distill(config, bot / "distill" / "bilstm", force=True)
    print(f"student distilled in {time.perf_counter() - t:.0f} s; held-out accuracy: teacher "
          f"{100 * metrics['teacher']['scores']['test']['accuracy']:.1f}%, student "
          f"{100 * metrics['student']['scores']['test']['accuracy']:.1f}%")

    t = step("3/4 rasa train nlu with the student as a drop-in classifier (config-student.yml)")
    run_rasa(["train", "nlu", "--config", "config-student.yml", "--out", "models", "--fixed-model-name", "student"],
             cwd=bot, capture=False)
    print(f"student model built in {time.perf_counter() - t:.0f} s")

    step(f"4/4 rasa run --enable-api on 127.0.0.1, {args.requests} timed /model/parse requests per model")
    teacher_answers, teacher_ms = serve_and_ask(bot / "models" / "teacher.tar.gz", bot, args.requests)
    student_answers, student_ms = serve_and_ask(bot / "models" / "student.tar.gz", bot, args.requests)

    print(f"\n{'text':<50} {'teacher':<26} {'student':<26}")
    for text, a, b in zip(SENTENCES, teacher_answers, student_answers):
        left = f"{a['intent']['name']} {a['intent']['confidence']:.2f}"
        right = f"{b['intent']['name']} {b['intent']['confidence']:.2f}"
        print(f"{repr(text)[:50]:<50} {left:<26} {right:<26}")
    (t50, t99), (s50, s99) = describe(teacher_ms), describe(student_ms)
    print(f"\n/model/parse latency   p50        p99")
    print(f"teacher               {t50:6.2f} ms  {t99:6.2f} ms")
    print(f"student               {s50:6.2f} ms  {s99:6.2f} ms")
    print(f"student is {t50 / s50:.1f}x faster at p50 (HTTP and Rasa's own work included)")
    print(f"\nservers stopped; demo took {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The main job on the embedded default (example_bot/, "Spokes"):

1. `rasa train nlu` with the BERT teacher (config.yml), fine-tuned from the packaged MiniLM;
2. `rasa-kd distill` a BiLSTM student from that teacher (configs/distill/example_bot.yml);
3. `rasa train nlu` with the student as a drop-in classifier (config-student.yml);
4. serve each model with `rasa run --enable-api` on 127.0.0.1, send /model/parse requests, and print
   the answers side by side with teacher-vs-student latency; the servers are stopped at the end.

What Rasa, TensorFlow and the trainer print goes to a log file (its path is printed first and last);
the screen shows the stage headers, one progress bar per long stage on a terminal (summary lines
otherwise), warnings raised by rasa-kd, the answers and the latency table.
"""
import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ["RASA_TELEMETRY_ENABLED"] = "false"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from rasa_kd.openblas import choose_kernels  # noqa: E402

choose_kernels()  # before NumPy loads: kernels this CPU runs well here and in the rasa processes it starts

from rasa_process import LoggedRun, rasa_server  # noqa: E402  (scripts/rasa_process.py)

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


class Screen:
    """What the user sees: headers, summary lines, and progress bars only on a terminal."""

    def __init__(self, stream, log: Path):
        self.stream = stream
        self.bars = stream.isatty()
        self.log = log

    def say(self, text: str = "") -> None:
        print(text, file=self.stream, flush=True)

    def stage(self, title: str) -> float:
        self.say(f"\n== {title}")
        return time.perf_counter()

    def run(self, command, cwd: Path, what: str) -> None:
        """Run a command with its output appended to the log; relay its progress and rasa-kd's warnings."""
        LoggedRun(command, cwd, self.log).wait(self.stream if self.bars else None, what, self.warn)

    def warn(self, line: str) -> None:
        self.say(f"warning: {line}")

    def progress(self, total: int, description: str):
        from tqdm import tqdm

        return tqdm(total=total, desc=description, unit="request", file=self.stream, disable=not self.bars, leave=False)


def serve_and_ask(screen: Screen, name: str, archive: Path, bot: Path, requests: int):
    """Answers to SENTENCES and /model/parse latencies (ms) from a real `rasa run`."""
    with rasa_server(archive, cwd=bot, log=screen.log) as server:
        answers = [server.parse(text) for text in SENTENCES]
        for text in SENTENCES[:3]:  # warm-up
            server.parse(text)
        latencies = []
        with screen.progress(requests, f"{name}: /model/parse") as bar:
            for i in range(requests):
                start = time.perf_counter()
                server.parse(SENTENCES[i % (len(SENTENCES) - 1)])
                latencies.append((time.perf_counter() - start) * 1000)
                bar.update(1)
    return answers, latencies


def describe(latencies):
    ordered = sorted(latencies)
    return statistics.median(ordered), ordered[int(0.99 * (len(ordered) - 1))]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bot", type=Path, default=ROOT / "example_bot", help="the Rasa project (default: example_bot/)")
    parser.add_argument("--requests", type=int, default=200, help="timed /model/parse requests per model")
    parser.add_argument("--log", type=Path, help="where the full output goes (default: BOT/demo.log)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a distillation setting for step 2, as for `rasa-kd distill --set`")
    args = parser.parse_args(argv)
    bot = args.bot.resolve()
    log = (args.log or bot / "demo.log").resolve()
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("")
    screen = Screen(sys.stdout, log)
    started = time.perf_counter()
    screen.say(f"rasa-kd demo on {bot.name}; the full log (Rasa, TensorFlow, the trainer) goes to {log}")

    t = screen.stage("1/4 rasa train nlu with the BERT teacher (config.yml)")
    screen.run(["-m", "rasa", "train", "nlu", "--config", "config.yml", "--out", "models", "--fixed-model-name", "teacher"],
               bot, "teacher")
    screen.say(f"teacher trained in {time.perf_counter() - t:.0f} s: models/teacher.tar.gz")

    t = screen.stage("2/4 rasa-kd distill: a BiLSTM student from that teacher")
    run = bot / "distill" / "bilstm"
    distill = ["-m", "rasa_kd.cli", "distill", "--config", str(ROOT / "configs" / "distill" / "example_bot.yml"),
               "--train", str(bot / "data" / "nlu.yml"), "--test", str(bot / "tests" / "test_nlu.yml"),
               "--teacher", str(bot / "models" / "teacher.tar.gz"), "--output", str(run), "--force", "--progress"]
    for item in args.set:
        distill += ["--set", item]
    screen.run(distill, ROOT, "distillation")
    metrics = json.loads((run / "metrics.json").read_text())
    transfer = metrics["transfer_set"]
    screen.say(f"student distilled in {time.perf_counter() - t:.0f} s from a transfer set of {transfer['size']:,} sentences; "
               f"held-out accuracy: teacher {100 * metrics['teacher']['scores']['test']['accuracy']:.1f}%, "
               f"student {100 * metrics['student']['scores']['test']['accuracy']:.1f}%; report: {run / 'report.md'}")

    t = screen.stage("3/4 rasa train nlu with the student as a drop-in classifier (config-student.yml)")
    screen.run(["-m", "rasa", "train", "nlu", "--config", "config-student.yml", "--out", "models", "--fixed-model-name", "student"],
               bot, "student model")
    screen.say(f"student model built in {time.perf_counter() - t:.0f} s: models/student.tar.gz")

    screen.stage(f"4/4 rasa run --enable-api on 127.0.0.1, {args.requests} timed /model/parse requests per model")
    teacher_answers, teacher_ms = serve_and_ask(screen, "teacher", bot / "models" / "teacher.tar.gz", bot, args.requests)
    student_answers, student_ms = serve_and_ask(screen, "student", bot / "models" / "student.tar.gz", bot, args.requests)

    screen.say(f"\n{'text':<50} {'teacher':<26} {'student':<26}")
    for text, a, b in zip(SENTENCES, teacher_answers, student_answers):
        left = f"{a['intent']['name']} {a['intent']['confidence']:.2f}"
        right = f"{b['intent']['name']} {b['intent']['confidence']:.2f}"
        screen.say(f"{repr(text)[:50]:<50} {left:<26} {right:<26}")
    (t50, t99), (s50, s99) = describe(teacher_ms), describe(student_ms)
    screen.say("\n/model/parse latency   p50        p99")
    screen.say(f"teacher               {t50:6.2f} ms  {t99:6.2f} ms")
    screen.say(f"student               {s50:6.2f} ms  {s99:6.2f} ms")
    screen.say(f"student is {t50 / s50:.1f}x faster at p50 (HTTP and Rasa's own work included)")
    screen.say(f"\nservers stopped; demo took {time.perf_counter() - started:.0f} s; full log: {log}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

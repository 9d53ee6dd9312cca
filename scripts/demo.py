"""The main job on the embedded default: train the example bot's NLU with the BERT teacher,
serve it with `rasa run --enable-api` on 127.0.0.1, and print a few /model/parse answers."""
import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ["RASA_TELEMETRY_ENABLED"] = "false"

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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bot", type=Path, default=ROOT / "example_bot", help="the Rasa project to train and serve")
    parser.add_argument("--requests", type=int, default=50, help="timed /model/parse requests for the latency line")
    args = parser.parse_args()

    print(f"== rasa train nlu in {args.bot} (fine-tunes the BERT teacher)", flush=True)
    started = time.perf_counter()
    run_rasa(["train", "nlu", "--out", "models", "--fixed-model-name", "teacher"], cwd=args.bot, capture=False)
    print(f"trained in {time.perf_counter() - started:.0f} s: {args.bot / 'models' / 'teacher.tar.gz'}")

    print("== rasa run --enable-api on 127.0.0.1", flush=True)
    with rasa_server(args.bot / "models" / "teacher.tar.gz", cwd=args.bot) as server:
        print(f"serving at {server.url}\n")
        print(f"{'text':<52} {'intent':<22} {'confidence':>10}")
        for text in SENTENCES:
            answer = server.parse(text)
            intent = answer["intent"]
            print(f"{repr(text):<52} {str(intent['name']):<22} {intent['confidence']:>10.3f}")
        latencies = []
        for i in range(args.requests):
            start = time.perf_counter()
            server.parse(SENTENCES[i % (len(SENTENCES) - 1)])
            latencies.append((time.perf_counter() - start) * 1000)
    print(
        f"\nteacher /model/parse latency over {args.requests} requests: "
        f"p50 {statistics.median(latencies):.1f} ms, max {max(latencies):.1f} ms"
    )
    print("server stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())

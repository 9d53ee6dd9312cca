"""Every benchmark task in turn (sst2, cola, trec, sara, snips), then benchmarks/RESULTS.md.

    .venv/bin/python benchmarks/run_all.py [--tasks sara trec] [--skip-done]

A task whose results file exists is skipped with --skip-done, so an interrupted run continues.
Expect several hours on 2 CPU cores (see RESULTS.md for each stage's wall time).
"""
import argparse
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TASKS = ["sara", "trec", "snips", "cola", "sst2"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", default=TASKS, choices=TASKS)
    parser.add_argument("--skip-done", action="store_true")
    args, rest = parser.parse_known_args()
    for task in args.tasks:
        if args.skip_done and (ROOT / "benchmarks" / "results" / f"task-{task}.json").is_file():
            print(f"== {task}: results exist, skipped")
            continue
        print(f"== {task}", flush=True)
        subprocess.run([sys.executable, str(ROOT / "benchmarks" / "run_task.py"), "--task", task, "--no-progress", *rest], check=True)
    return subprocess.run([sys.executable, str(ROOT / "benchmarks" / "report.py")]).returncode


if __name__ == "__main__":
    sys.exit(main())

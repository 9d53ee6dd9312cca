"""Run one command as K local tf.distribute workers (MultiWorkerMirroredStrategy), TF_CONFIG set for each.

    python scripts/launch_workers.py --workers 2 -- rasa-kd student --output runs/sara --strategy multi_worker

Each worker gets {"cluster": {"worker": ["127.0.0.1:P0", ...]}, "task": {"type": "worker", "index": i}}
with free ports on 127.0.0.1; worker 0 is the chief (it writes the run's files; its output is shown,
the others' go to WORKER_LOGS/worker-i.log). If a worker fails, the others are stopped. The exit code
is the first failure's, else 0. On K hosts, set TF_CONFIG on each host yourself (docs/scaling.md).
"""
import argparse
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import List, Optional


def free_ports(count: int) -> List[int]:
    """Ports free on 127.0.0.1 now (held open together, so they differ)."""
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def tf_configs(ports: List[int]) -> List[str]:
    cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    return [json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}}) for i in range(len(ports))]


def launch(command: List[str], workers: int, logs: Path, timeout: Optional[float] = None) -> int:
    """Run ``command`` as ``workers`` local workers; return the exit code (the first failure's, else 0)."""
    logs.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "RASA_TELEMETRY_ENABLED": "false"}
    processes, handles = [], []
    for index, config in enumerate(tf_configs(free_ports(workers))):
        if index == 0:
            out = None  # the chief's output is the command's output
        else:
            out = open(logs / f"worker-{index}.log", "w", encoding="utf-8")
            handles.append(out)
        processes.append(subprocess.Popen(command, env={**env, "TF_CONFIG": config}, stdout=out,
                                          stderr=subprocess.STDOUT if out else None))
    deadline = None if timeout is None else time.monotonic() + timeout
    code = 0
    try:
        while any(p.poll() is None for p in processes):
            failed = [p.returncode for p in processes if p.returncode not in (None, 0)]
            if failed or (deadline is not None and time.monotonic() > deadline):
                code = failed[0] if failed else 124
                break
            time.sleep(0.2)
        else:
            code = next((p.returncode for p in processes if p.returncode), 0)
    finally:
        for p in processes:
            if p.poll() is None:
                p.kill()
            p.wait()
        for handle in handles:
            handle.close()
    if code:
        print(f"launch_workers: a worker failed (exit {code}); the others' logs are in {logs}", file=sys.stderr)
    return code


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=2, help="local worker processes (default: 2)")
    parser.add_argument("--logs", type=Path, default=Path("worker-logs"), help="folder for workers 1..K-1's output")
    parser.add_argument("--timeout", type=float, help="stop every worker after this many seconds")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- then the command every worker runs")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the command after --, e.g. -- rasa-kd student --output OUT --strategy multi_worker")
    if args.workers < 1:
        parser.error(f"--workers must be at least 1, got {args.workers}")
    return launch(command, args.workers, args.logs, args.timeout)


if __name__ == "__main__":
    sys.exit(main())

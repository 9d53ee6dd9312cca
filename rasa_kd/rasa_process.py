"""Running Rasa's own commands in subprocesses: `rasa train`, and `rasa run --enable-api` on
127.0.0.1 with bounded waits, always stopped when the caller is done."""
import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Iterator, Optional, Sequence


class RasaProcessError(RuntimeError):
    """A Rasa subprocess failed; the message carries the end of its output."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def rasa_env() -> dict:
    """The environment for Rasa subprocesses: no telemetry, nothing fetched from a hub."""
    return {**os.environ, "RASA_TELEMETRY_ENABLED": "false", "TF_CPP_MIN_LOG_LEVEL": "2", "HF_HUB_OFFLINE": "1"}


def run_rasa(args: Sequence[str], cwd: Path, timeout: float = 3600, capture: bool = True) -> subprocess.CompletedProcess:
    """Run ``rasa ARGS`` to completion; raise RasaProcessError with its output if it fails."""
    result = subprocess.run(
        [sys.executable, "-m", "rasa", *args],
        cwd=cwd,
        env=rasa_env(),
        capture_output=capture,
        text=True,
        timeout=timeout,
    )
    if result.returncode != 0:
        output = f"{(result.stdout or '')[-3000:]}\n{(result.stderr or '')[-3000:]}" if capture else ""
        raise RasaProcessError(f"rasa {' '.join(args)} failed with exit code {result.returncode}\n{output}")
    return result


class RasaServer:
    """A running `rasa run --enable-api` and a small client for it."""

    def __init__(self, url: str, process: subprocess.Popen, log: Path):
        self.url, self.process, self.log = url, process, log

    def parse(self, text: str, timeout: float = 30) -> dict:
        """POST /model/parse and return the answer."""
        request = urllib.request.Request(
            f"{self.url}/model/parse",
            data=json.dumps({"text": text}).encode("utf-8"),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read().decode("utf-8"))

    def log_tail(self, characters: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-characters:]


@contextlib.contextmanager
def rasa_server(model: Path, cwd: Path, startup_timeout: float = 180, extra_args: Sequence[str] = ()) -> Iterator[RasaServer]:
    """Serve ``model`` on a free 127.0.0.1 port until the block ends, then stop the server."""
    # `rasa run` silently serves the newest model in ./models when -m does not exist (relative paths
    # resolve against its cwd), so pass an absolute path that is known to exist.
    model = Path(model).resolve()
    if not model.is_file():
        raise RasaProcessError(f"model archive {model} does not exist")
    port = free_port()
    log = Path(cwd) / f"rasa-run-{port}.log"
    command = [sys.executable, "-m", "rasa", "run", "--enable-api", "-m", str(model), "-i", "127.0.0.1", "-p", str(port), *extra_args]
    with open(log, "w") as log_file:
        process = subprocess.Popen(command, cwd=cwd, env=rasa_env(), stdout=log_file, stderr=subprocess.STDOUT)
    server = RasaServer(f"http://127.0.0.1:{port}", process, log)
    try:
        _wait_until_ready(server, startup_timeout, model)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=30)


def _wait_until_ready(server: RasaServer, timeout: float, model: Path) -> None:
    deadline = time.monotonic() + timeout
    last_error: Optional[Exception] = None
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RasaProcessError(f"rasa run exited with {server.process.returncode}:\n{server.log_tail()}")
        if "Could not load model" in server.log_tail(100_000):
            raise RasaProcessError(f"rasa run could not load the model:\n{server.log_tail(6000)}")
        try:
            with urllib.request.urlopen(f"{server.url}/status", timeout=5) as response:
                served = json.loads(response.read()).get("model_file")
            if served:
                if Path(served).name != model.name:
                    raise RasaProcessError(f"rasa run serves {served}, not the requested {model}")
                return
        except (urllib.error.URLError, ConnectionError, OSError) as error:
            last_error = error
        time.sleep(0.5)
    raise RasaProcessError(f"rasa run did not serve a model within {timeout:.0f} s ({last_error}):\n{server.log_tail()}")

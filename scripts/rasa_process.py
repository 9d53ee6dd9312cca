"""Running Rasa's own commands in subprocesses: `rasa train`, and `rasa run --enable-api` on
127.0.0.1 with bounded waits, always stopped when the caller is done."""
import codecs
import contextlib
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable, Iterator, Optional, Sequence, TextIO


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


# A tqdm bar as it is written to a file: "training student:  45%|####5     | 27/60 [00:12<...]".
_TQDM_STATE = re.compile(r"([^\r\n|]*?):\s+\d+%\|[^|\r\n]*\|\s*(\d+)/(\d+)")
# A warning from rasa-kd's own code, as Rasa's log, the rasa-kd CLI or Python's warnings module print it.
_PROJECT_WARNING = re.compile(r"WARNING\s+(rasa_kd[\w.]*)\s*[-:]\s*(.*)|/rasa_kd/(\S+?\.py:\d+): (\w*Warning: .*)")


class LoggedRun:
    """``python ARGS`` with its whole output appended to ``log``; :meth:`wait` relays its progress."""

    def __init__(self, args: Sequence[str], cwd: Path, log: Path):
        self.args, self.log = list(args), Path(log)
        with open(self.log, "ab") as handle:
            handle.write(f"\n$ python {' '.join(self.args)}   (in {cwd})\n".encode("utf-8"))
            handle.flush()
            self.offset = handle.tell()
            self.process = subprocess.Popen([sys.executable, *self.args], cwd=cwd, env=rasa_env(), stdout=handle,
                                            stderr=subprocess.STDOUT)

    def wait(self, bar_stream: Optional[TextIO], description: str, warn: Callable[[str], None],
             timeout: float = 3600, poll: float = 0.25) -> None:
        """Wait for the command; show its latest tqdm state as one bar on ``bar_stream`` (None: no bar),
        pass each warning of rasa-kd's code to ``warn``; raise RasaProcessError if it fails."""
        bar, pending, deadline = None, "", time.monotonic() + timeout
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        try:
            while True:
                finished = self.process.poll() is not None
                with open(self.log, "rb") as handle:
                    handle.seek(self.offset)
                    data = handle.read()
                self.offset += len(data)
                chunk = decoder.decode(data, final=finished)
                pieces = re.split(r"[\r\n]", pending + chunk)
                pending = "" if finished else pieces.pop()
                for piece in pieces:
                    found = _PROJECT_WARNING.search(piece)
                    if found:
                        warn(found.group(2) if found.group(1) else f"{found.group(4)} ({found.group(3)})")
                states = _TQDM_STATE.findall(chunk)
                if bar_stream is not None and states:
                    bar = _relay(bar, states[-1], description, bar_stream)
                if finished:
                    break
                if time.monotonic() > deadline:
                    self.process.kill()
                    raise RasaProcessError(f"python {' '.join(self.args)} did not finish within {timeout:.0f} s; log: {self.log}")
                time.sleep(poll)
        finally:
            if bar is not None:
                bar.close()
        if self.process.returncode != 0:
            tail = self.log.read_text(errors="replace")[-3000:]
            raise RasaProcessError(f"python {' '.join(self.args)} failed with exit code {self.process.returncode}; "
                                   f"the end of {self.log}:\n{tail}")


def _relay(bar, state, description: str, stream: TextIO):
    from tqdm import tqdm

    name, done, total = state[0].strip(), int(state[1]), int(state[2])
    label = name or description
    if bar is None or bar.total != total or bar.desc != label:
        if bar is not None:
            bar.close()
        # The command's own units and rate are not known here: position and time only.
        bar = tqdm(total=total, desc=label, file=stream, leave=False,
                   bar_format="{desc}: {percentage:3.0f}%|{bar}| {n}/{total} [{elapsed}<{remaining}]")
    bar.update(done - bar.n)
    return bar


class RasaServer:
    """A running `rasa run --enable-api` and a small client for it."""

    def __init__(self, url: str, process: subprocess.Popen, log: Path, log_start: int = 0):
        self.url, self.process, self.log, self.log_start = url, process, log, log_start

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
        """The end of this server's output."""
        with open(self.log, "rb") as handle:
            handle.seek(self.log_start)
            return handle.read().decode("utf-8", errors="replace")[-characters:]


@contextlib.contextmanager
def rasa_server(model: Path, cwd: Path, startup_timeout: float = 180, extra_args: Sequence[str] = (),
                log: Optional[Path] = None) -> Iterator[RasaServer]:
    """Serve ``model`` on a free 127.0.0.1 port until the block ends, then stop the server.

    The server's output goes to ``log`` (appended), by default ``cwd/rasa-run-PORT.log``.
    """
    # `rasa run` silently serves the newest model in ./models when -m does not exist (relative paths
    # resolve against its cwd), so pass an absolute path that is known to exist.
    model = Path(model).resolve()
    if not model.is_file():
        raise RasaProcessError(f"model archive {model} does not exist")
    port = free_port()
    log = Path(log) if log is not None else Path(cwd) / f"rasa-run-{port}.log"
    command = [sys.executable, "-m", "rasa", "run", "--enable-api", "-m", str(model), "-i", "127.0.0.1", "-p", str(port), *extra_args]
    with open(log, "ab") as log_file:
        log_file.write(f"\n$ {' '.join(command)}\n".encode("utf-8"))
        log_file.flush()
        start = log_file.tell()
        process = subprocess.Popen(command, cwd=cwd, env=rasa_env(), stdout=log_file, stderr=subprocess.STDOUT)
    server = RasaServer(f"http://127.0.0.1:{port}", process, log, start)
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

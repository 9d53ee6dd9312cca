"""What `make demo` and the `rasa-kd` command show a user: summary lines, no third-party noise."""
import fcntl
import os
import pty
import select
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest
import yaml

from tests.tiny_models import TEST_EXAMPLES, TINY_DISTILL, write_nlu_file, write_splits, write_tiny_bert

REPO = Path(__file__).resolve().parents[1]
# Lines a user should never have to scroll past.
NOISE = ("DeprecationWarning", "FutureWarning", "PendingDeprecationWarning", "tensorflow/core", "pkg_resources")


def run_on_terminal(args, cwd, timeout=600):
    """Run ``args`` with standard output and error on a pseudo-terminal; return what it showed."""
    leader, follower = pty.openpty()
    # A pseudo-terminal starts 0 columns wide, which would cut every progress bar to nothing.
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    process = subprocess.Popen(args, cwd=cwd, stdin=subprocess.DEVNULL, stdout=follower, stderr=follower, close_fds=True)
    os.close(follower)
    chunks, deadline = [], time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([leader], [], [], 1.0)
            if ready:
                try:
                    data = os.read(leader, 65536)
                except OSError:  # the terminal closed: the process is done
                    break
                if not data:
                    break
                chunks.append(data)
            elif process.poll() is not None:
                break
        else:
            raise AssertionError(f"{args} did not finish within {timeout} s")
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=30)
        os.close(leader)
    return process.returncode, b"".join(chunks).decode("utf-8", errors="replace")


@pytest.fixture(scope="module")
def tiny_bot(tmp_path_factory):
    """A Rasa project of the tiny intents, its teacher a tiny local BERT."""
    bot = tmp_path_factory.mktemp("demo") / "bot"
    write_nlu_file(bot / "data" / "nlu.yml")
    write_nlu_file(bot / "tests" / "test_nlu.yml", TEST_EXAMPLES)
    teacher = {"name": "rasa_kd.BertIntentClassifier", "model": str(write_tiny_bert(bot.parent / "tiny_bert")),
               "epochs": 25, "batch_size": 8, "learning_rate": 0.002, "max_seq_length": 16, "train_embeddings": True}
    for name, component in (("config.yml", teacher),
                            ("config-student.yml", {"name": "rasa_kd.StudentIntentClassifier", "student_path": "distill/bilstm/student"})):
        config = {"recipe": "default.v1", "language": "en", "assistant_id": "rasa-kd-demo-test", "pipeline": [component]}
        (bot / name).write_text(yaml.safe_dump(config))
    return bot


def demo_command(bot: Path):
    settings = {key: value for key, value in TINY_DISTILL.items() if key.startswith(("transfer_set", "labelling", "student", "evaluation"))}
    settings["student.training.epochs"] = 2
    command = [sys.executable, str(REPO / "scripts" / "demo.py"), "--bot", str(bot), "--requests", "5"]
    for key, value in settings.items():
        command += ["--set", f"{key}={value}"]
    return command


@pytest.mark.e2e
def test_demo_off_a_terminal_prints_a_summary_and_no_third_party_noise(tiny_bot):
    run = subprocess.run(demo_command(tiny_bot), cwd=REPO, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stdout + run.stderr
    lines = run.stdout.splitlines()
    log = tiny_bot / "demo.log"
    for expected in ("== 1/4 rasa train nlu", "== 2/4 rasa-kd distill", "== 3/4 rasa train nlu", "== 4/4 rasa run",
                     "teacher trained in", "held-out accuracy: teacher", "student model built in",
                     "/model/parse latency", "faster at p50", f"full log: {log}"):
        assert any(expected in line for line in lines), f"{expected!r} missing from:\n{run.stdout}"
    assert not [line for line in lines if any(noise in line for noise in NOISE)]
    assert "\r" not in run.stdout  # no progress bars when the output is not a terminal
    assert len(lines) < 45, run.stdout
    # The full output went to the log instead: Rasa's and the trainer's.
    assert "rasa_kd.cli distill" in log.read_text() and "/model/parse" not in run.stderr


@pytest.mark.e2e
@pytest.mark.slow  # the whole demo a second time (a minute), for its terminal output; the default run stays under 15 minutes
def test_demo_on_a_terminal_shows_progress_bars(tiny_bot):
    code, shown = run_on_terminal(demo_command(tiny_bot), REPO)
    assert code == 0, shown
    assert "training student: " in shown and "%|" in shown  # the relayed bar of step 2
    assert "student: /model/parse" in shown
    assert "held-out accuracy: teacher" in shown and "faster at p50" in shown
    assert not any(noise in shown for noise in NOISE)


def test_cli_hides_third_party_notices_unless_verbose(tmp_path, tiny_bert_dir):
    data = write_splits(tmp_path / "data")
    command = [sys.executable, "-m", "rasa_kd.cli", "teacher", "--output", str(tmp_path / "run"), "--train", str(data["train"]),
               "--set", f"teacher.model={tiny_bert_dir}", "--set", "teacher.epochs=1", "--set", "teacher.max_seq_length=16"]
    env = {**os.environ, "PYTHONWARNINGS": "default"}  # as a user who asks Python for every warning
    quiet = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert quiet.returncode == 0, quiet.stderr
    assert "teacher: done" in quiet.stdout
    assert not [line for line in quiet.stderr.splitlines() if "Warning" in line], quiet.stderr

    verbose = subprocess.run(command[:3] + ["--verbose"] + command[3:] + ["--force"], capture_output=True, text=True,
                             timeout=300, env=env)
    assert verbose.returncode == 0, verbose.stderr
    assert "DEBUG" in verbose.stderr and "Warning" in verbose.stderr


def test_a_warning_of_rasa_kd_stays_visible(tmp_path):
    # A module of the package that warns on import, as the CLI would meet it.
    script = ("import warnings, rasa_kd.cli as cli; cli.configure_output(False);"
              "import rasa_kd.errors;"
              "warnings.warn_explicit('a third-party notice', DeprecationWarning, 'sqlalchemy/x.py', 1, module='sqlalchemy.x');"
              "warnings.warn_explicit('a rasa-kd warning', UserWarning, 'rasa_kd/x.py', 1, module='rasa_kd.x')")
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert run.returncode == 0, run.stderr
    assert "a rasa-kd warning" in run.stderr and "a third-party notice" not in run.stderr

"""Several labelling workers on one logits cache: each shard computed once, by one worker, and the
logits of one worker alone; a dead worker's claim is taken over."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from rasa_kd.distill import labelling
from rasa_kd.distill.labelling import label_transfer_set
from rasa_kd.distill.transfer_set import TransferSet
from rasa_kd.models.teacher import Teacher
from tests.tiny_models import vocabulary

REPO = Path(__file__).resolve().parents[1]


def _transfer_set(path: Path, count: int) -> TransferSet:
    words = [w for w in vocabulary() if w.isalpha()]
    rng = np.random.default_rng(1)
    texts = sorted({" ".join(rng.choice(words, size=rng.integers(3, 9))) for _ in range(count * 2)})[:count]
    transfer = TransferSet(texts, ["rules"] * len(texts), [None] * len(texts))
    transfer.save(path)
    return transfer


def _labelled_cache_missing(tmp_path: Path, bilstm_run, shards):
    """A 3-shard cache labelled by the test teacher, with ``shards`` deleted again: (teacher, texts, the
    labelling result, the cache folder)."""
    teacher = Teacher.load(bilstm_run[0] / "teacher")
    texts = _transfer_set(tmp_path / "t.jsonl", 300).texts
    first = label_transfer_set(teacher, texts, tmp_path / "c", shard_size=100, progress=False)
    for index in shards:
        labelling._shard_path(first.cache_dir, index).unlink()
    return teacher, texts, first, first.cache_dir


def test_two_workers_compute_each_shard_once_and_the_logits_of_one(tmp_path, bilstm_run):
    teacher_dir = bilstm_run[0] / "teacher"
    transfer = _transfer_set(tmp_path / "transfer_set.jsonl", 8000)
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2", "RASA_TELEMETRY_ENABLED": "false"}
    command = [sys.executable, str(REPO / "tests" / "labelling_worker.py"), str(teacher_dir),
               str(tmp_path / "transfer_set.jsonl"), str(tmp_path / "shared"), "100"]
    workers = [subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = []
    for worker in workers:
        out, err = worker.communicate(timeout=600)
        assert worker.returncode == 0, err[-3000:]
        outputs.append(json.loads(out.strip().splitlines()[-1]))
    assert sum(o["computed"] for o in outputs) == outputs[0]["shards"] == 80, outputs  # none twice, none missed
    folder = next((tmp_path / "shared").glob("logits-*"))
    assert not list(folder.glob("*.claim")) and not list(folder.glob(".*.tmp"))

    teacher = Teacher.load(teacher_dir)
    shared = label_transfer_set(teacher, transfer.texts, tmp_path / "shared", batch_size=100, shard_size=100, progress=False)
    alone = label_transfer_set(teacher, transfer.texts, tmp_path / "alone", batch_size=100, shard_size=100, progress=False)
    assert shared.reused_shards == 80 and shared.computed_shards == 0 and alone.computed_shards == 80
    np.testing.assert_array_equal(shared.logits, alone.logits)


def test_a_dead_workers_claim_is_taken_over_and_a_live_ones_waited_for(tmp_path, bilstm_run, monkeypatch):
    teacher, texts, first, folder = _labelled_cache_missing(tmp_path, bilstm_run, (1, 2))
    # Shard 1: claimed by a process of this host that no longer exists; shard 2: by a live one (this test's
    # parent), which finishes it while we wait.
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True).stdout
    labelling._claim_path(folder, 1).write_text(json.dumps({"host": labelling.socket.gethostname(), "pid": int(dead)}))
    live = labelling._claim_path(folder, 2)
    live.write_text(json.dumps({"host": labelling.socket.gethostname(), "pid": os.getppid()}))
    sleeps = []

    def finish_shard_2(seconds):
        sleeps.append(seconds)
        labelling._save_shard(labelling._shard_path(folder, 2), first.logits[200:300])
        live.unlink()

    monkeypatch.setattr(labelling.time, "sleep", finish_shard_2)
    again = label_transfer_set(teacher, texts, tmp_path / "c", shard_size=100, progress=False)
    assert again.computed_shards == 1 and again.reused_shards == 1 and len(sleeps) == 1
    np.testing.assert_allclose(again.logits, first.logits, atol=1e-6)
    assert not list(folder.glob("*.claim"))


def test_a_mirrored_run_labels_on_every_device_of_its_host(tmp_path, bilstm_run):
    """`rasa-kd label --strategy mirrored` with 2 logical CPU devices: a teacher copy on each labels shards side
    by side (each shard once), and the logits are those of one device."""
    import shutil

    out = tmp_path / "run"
    shutil.copytree(bilstm_run[0], out, ignore=shutil.ignore_patterns("cache", "student*", "checkpoints", "resume", "labelling.json"))
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2", "RASA_TELEMETRY_ENABLED": "false"}
    done = subprocess.run([sys.executable, "-m", "rasa_kd.cli", "label", "--output", str(out), "--no-progress", "--strategy", "mirrored",
                           "--set", "compute.cpu_replicas=2", "--set", "labelling.shard_size=8"],
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    record = json.loads((out / "labelling.json").read_text())
    assert len(record["shards_by_device"]) == 2 and sum(record["shards_by_device"]) == record["shards"] == 50
    assert min(record["shards_by_device"]) > 0, record  # both devices took part
    folder = Path(record["cache"])
    spread = np.concatenate([np.load(labelling._shard_path(folder, i)) for i in range(record["shards"])])
    one_device = np.concatenate([np.load(p) for p in sorted(next((bilstm_run[0] / "cache").glob("logits-*")).glob("shard-*.npy"))])
    np.testing.assert_allclose(spread, one_device, atol=1e-4)  # batches are grouped differently: float noise only


def test_a_claim_a_killed_worker_left_unreadable_is_taken_over_and_a_lost_draft_is_swept(tmp_path, bilstm_run, monkeypatch):
    """A worker killed between creating its claim and writing it (as claims were made before they were linked in
    whole) left an empty file that nobody would ever release: the resumed run waited on it for ever. Such a claim,
    once older than the grace, is taken over; a fresh one is waited for, as it may still be being written."""
    teacher, texts, first, folder = _labelled_cache_missing(tmp_path, bilstm_run, (0, 1))
    old_empty = labelling._claim_path(folder, 0)
    old_empty.write_text("")
    stale = labelling.time.time() - 2 * labelling._DAMAGED_CLAIM_GRACE
    os.utime(old_empty, (stale, stale))
    lost_draft = folder / f".{labelling._claim_path(folder, 1).name}.99999999.1.tmp"  # killed before its link
    lost_draft.write_text(json.dumps({"host": labelling.socket.gethostname(), "pid": 99999999}))
    fresh_half = labelling._claim_path(folder, 1)
    fresh_half.write_text('{"host": ')
    sleeps = []

    def age_the_half_written_claim(seconds):
        sleeps.append(seconds)
        assert len(sleeps) < 5, "waited on a claim that should be taken over"
        os.utime(fresh_half, (stale, stale))

    monkeypatch.setattr(labelling.time, "sleep", age_the_half_written_claim)
    again = label_transfer_set(teacher, texts, tmp_path / "c", shard_size=100, progress=False)
    assert again.computed_shards == 2 and again.reused_shards == 1 and len(sleeps) == 1
    np.testing.assert_allclose(again.logits, first.logits, atol=1e-6)
    assert not list(folder.glob("*.claim")) and not list(folder.glob(".*.tmp"))


def test_claims_without_hard_links_are_created_exclusively(tmp_path, bilstm_run, monkeypatch):
    teacher = Teacher.load(bilstm_run[0] / "teacher")
    texts = _transfer_set(tmp_path / "t.jsonl", 300).texts

    def no_links(source, target):
        raise PermissionError(1, "Operation not permitted", str(target))

    monkeypatch.setattr(labelling.os, "link", no_links)
    done = label_transfer_set(teacher, texts, tmp_path / "c", shard_size=100, progress=False)
    held = labelling._claim_path(done.cache_dir, 0)
    held.write_text(json.dumps({"host": labelling.socket.gethostname(), "pid": os.getpid()}))
    assert not labelling._try_claim(done.cache_dir, 0, 3600.0)  # held by a live process: refused
    held.unlink()
    assert labelling._try_claim(done.cache_dir, 0, 3600.0)
    assert json.loads(held.read_text())["pid"] == os.getpid()
    assert done.computed_shards == 3 and not list(done.cache_dir.glob(".*.tmp"))

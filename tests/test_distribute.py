"""Training on tf.distribute: one device, MirroredStrategy over 2 logical CPUs and 2 local worker processes
(MultiWorkerMirroredStrategy, TF_CONFIG on 127.0.0.1) give the same loss curves and predictions."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from rasa_kd.distill import distribute
from rasa_kd.distill.config import load_config
from rasa_kd.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))

from launch_workers import launch, tf_configs  # noqa: E402


@pytest.fixture(scope="module")
def dropout_free_bert(tmp_path_factory):
    """The tiny BERT without dropout: replicas draw their own dropout masks, so only then do curves agree."""
    from tests.tiny_models import write_tiny_bert

    folder = write_tiny_bert(tmp_path_factory.mktemp("bert_no_dropout"))
    config = json.loads((folder / "config.json").read_text())
    config.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def _train(mode: str, bert: Path, teacher: Path, out: Path) -> dict:
    command = [sys.executable, str(REPO / "tests" / "distributed_training.py"), mode, str(bert), str(teacher), str(out)]
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2", "RASA_TELEMETRY_ENABLED": "false"}
    if mode == "multi_worker":
        assert launch(command, 2, out.parent / "logs", timeout=600) == 0, (out.parent / "logs" / "worker-1.log").read_text()[-3000:]
    else:
        result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(out.read_text())


@pytest.mark.slow  # 1.5 minutes: three trainings in three processes (the default run must stay under 15 minutes)
def test_one_device_two_mirrored_cpus_and_two_workers_train_alike(tmp_path, dropout_free_bert, bilstm_run):
    teacher = bilstm_run[0] / "teacher"
    runs = {**_train("local", dropout_free_bert, teacher, tmp_path / "local.json"),
            **_train("multi_worker", dropout_free_bert, teacher, tmp_path / "workers.json")}
    one = runs["one_device"]
    assert [runs[n]["replicas"] for n in ("one_device", "mirrored", "multi_worker")] == [1, 2, 2]
    for name in ("mirrored", "multi_worker"):
        other = runs[name]
        # The same steps summed in another order: equal to float tolerance, drifting a little over training.
        np.testing.assert_allclose(other["student_losses"], one["student_losses"], rtol=1e-4)
        np.testing.assert_allclose(other["student_logits"], one["student_logits"], atol=1e-3)
        np.testing.assert_allclose(other["teacher_losses"], one["teacher_losses"], rtol=1e-2)
        assert other["teacher_predictions"] == one["teacher_predictions"]
    assert one["student_losses"][-1] < one["student_losses"][0]


def test_replica_parts_cover_the_batch_in_order():
    parts = distribute.replica_parts(np.arange(7), 2)
    assert [p.tolist() for p in parts] == [[0, 1, 2, 3], [4, 5, 6]]
    assert [len(p) for p in distribute.replica_parts(np.arange(1), 2)] == [1, 0]


def test_multi_worker_needs_a_worker_cluster_in_tf_config(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ConfigError, match="TF_CONFIG is not set"):
        distribute.make_strategy("multi_worker")
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": {"worker": ["127.0.0.1:1"]}, "task": {"type": "worker", "index": 3}}))
    with pytest.raises(ConfigError, match="not one of the 1 workers"):
        distribute.make_strategy("multi_worker")
    with pytest.raises(ConfigError, match="must be one of"):
        distribute.make_strategy("tpu")


def test_the_launcher_gives_each_worker_its_own_task():
    configs = [json.loads(c) for c in tf_configs([4001, 4002])]
    assert [c["task"] for c in configs] == [{"type": "worker", "index": 0}, {"type": "worker", "index": 1}]
    assert all(c["cluster"]["worker"] == ["127.0.0.1:4001", "127.0.0.1:4002"] for c in configs)


def test_multi_worker_runs_only_the_training_stages(tmp_path, monkeypatch, tiny_data):
    from rasa_kd.distill import pipeline

    config = load_config(None, {"data.train": str(tiny_data["train"]), "compute.strategy": "multi_worker"})
    monkeypatch.setattr(distribute, "make_strategy", lambda *a, **k: None)  # no cluster here: the check comes first
    with pytest.raises(ConfigError, match="run the augment stage on one machine"):
        pipeline.run_stage("augment", config, tmp_path / "out")


def test_the_strategy_flag_sets_the_config(tmp_path):
    from rasa_kd import cli

    args = cli.build_parser().parse_args(["student", "--output", str(tmp_path), "--strategy", "mirrored"])
    assert cli.resolve_config(args).compute.strategy == "mirrored"

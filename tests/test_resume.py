"""Training that survives a crash: the loop's resume checkpoints, and a killed teacher or student run
that the same command finishes with the weights an uninterrupted run gives."""
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from rasa_kd.distill import pipeline
from rasa_kd.distill.config import load_config
from rasa_kd.distill.training import Trainer
from rasa_kd.models.student import StudentModel
from rasa_kd.models.teacher import Teacher
from tests.tiny_models import TEST_EXAMPLES, tiny_distill_config

REPO = Path(__file__).resolve().parents[1]
TEST_TEXTS = [text for examples in TEST_EXAMPLES.values() for text in examples]


class ToyTrainer(Trainer):
    """A Keras model with dropout, learning y = sum(x) under Adam: enough state to get resuming wrong."""

    def __init__(self, resume_dir=None, crash_at=None, keep="best", **kwargs):
        import tensorflow as tf

        from rasa_kd.distill.training import random_generators
        from rasa_kd.models.networks import use_checkpointable_dropout

        rng = np.random.default_rng(0)
        self.x = rng.normal(size=(96, 4)).astype(np.float32)
        self.y = self.x.sum(axis=1, keepdims=True)
        super().__init__([1] * len(self.x), 5, 8, seed=3, dev_metric="score", keep=keep, resume_dir=resume_dir,
                         checkpoint_seconds=0.0, progress=False, **kwargs)
        use_checkpointable_dropout()
        tf.keras.utils.set_random_seed(3)
        inputs = tf.keras.Input((4,))
        hidden = tf.keras.layers.Dropout(0.3)(tf.keras.layers.Dense(16, activation="relu")(inputs))
        self.model = tf.keras.Model(inputs, tf.keras.layers.Dense(1)(hidden))
        self.optimizer = tf.keras.optimizers.Adam(0.01)
        self.generators = random_generators(self.model)
        self.crash_at, self.steps_run, self.scores = crash_at, 0, iter([0.5, 0.9, 0.7, 0.8, 0.6])

        @tf.function
        def step(x, y):
            with tf.GradientTape() as tape:
                loss = tf.reduce_mean((self.model(x, training=True) - y) ** 2)
            self.optimizer.apply_gradients(zip(tape.gradient(loss, self.model.trainable_variables), self.model.trainable_variables))
            return loss

        self._step = step

    def train_step(self, batch):
        self.steps_run += 1
        if self.steps_run == self.crash_at:
            raise KeyboardInterrupt("killed")
        return float(self._step(self.x[batch], self.y[batch]))

    def evaluate(self):
        return {"score": next(self.scores)}  # dev peaks at epoch 2: model-best is not the last epoch

    def get_weights(self):
        return self.model.get_weights()

    def set_weights(self, weights):
        self.model.set_weights(weights)

    def checkpoint_objects(self):
        return {"model": self.model, "optimizer": self.optimizer, **self.generators}


def test_a_crashed_run_resumes_to_the_uninterrupted_weights_and_record(tmp_path):
    plain = ToyTrainer()
    plain_record = plain.fit()
    assert plain.steps_run == 60 and plain_record.best_epoch == 2
    assert not list(tmp_path.iterdir())

    crashed = ToyTrainer(resume_dir=tmp_path / "resume", crash_at=23)  # mid-epoch 2 (12 steps an epoch)
    with pytest.raises(KeyboardInterrupt):
        crashed.fit()
    resumed = ToyTrainer(resume_dir=tmp_path / "resume")
    resumed.scores = iter([0.9, 0.7, 0.8, 0.6])  # epoch 1 was scored before the crash
    record = resumed.fit()
    assert resumed.steps_run == 60 - 22, "the batches done before the crash were trained again"
    assert record.steps == 60 and record.best_epoch == 2 and len(record.epochs) == 5
    assert [e.loss for e in record.epochs] == pytest.approx([e.loss for e in plain_record.epochs], abs=1e-6)
    for mine, theirs in zip(resumed.get_weights(), plain.get_weights()):
        np.testing.assert_allclose(mine, theirs, atol=1e-6)


def test_a_finished_run_is_not_trained_again_and_a_changed_one_starts_afresh(tmp_path, caplog):
    first = ToyTrainer(resume_dir=tmp_path / "resume")
    record = first.fit()
    again = ToyTrainer(resume_dir=tmp_path / "resume")
    again_record = again.fit()
    assert again.steps_run == 0 and again_record.best_epoch == record.best_epoch
    for mine, theirs in zip(again.get_weights(), first.get_weights()):
        np.testing.assert_array_equal(mine, theirs)

    with caplog.at_level(logging.WARNING, logger="rasa_kd.distill.training"):
        other = ToyTrainer(resume_dir=tmp_path / "resume", resume_key="other data")
        other.fit()
    assert other.steps_run == 60 and "of another run" in caplog.text


def test_keep_last_resumes_too(tmp_path):
    plain = ToyTrainer(keep="last")
    plain.fit()
    with pytest.raises(KeyboardInterrupt):
        ToyTrainer(resume_dir=tmp_path / "r", crash_at=50, keep="last").fit()
    resumed = ToyTrainer(resume_dir=tmp_path / "r", keep="last")
    resumed.scores = iter([0.8, 0.6])
    resumed.fit()
    for mine, theirs in zip(resumed.get_weights(), plain.get_weights()):
        np.testing.assert_allclose(mine, theirs, atol=1e-6)


# --- SIGKILL of the real stages ----------------------------------------------------------------------


def _latest_step(folder: Path) -> int:
    """The step of the latest resume checkpoint in ``folder`` (0 if none)."""
    index = folder / "checkpoint"
    try:
        text = index.read_text()
    except OSError:
        return 0
    line = next((l for l in text.splitlines() if l.startswith("model_checkpoint_path")), "")
    return int(line.rsplit("-", 1)[-1].strip('"')) if "-" in line else 0


def _kill_during(stage: str, out: Path, at_step: int, total_steps: int) -> int:
    """Run `rasa-kd STAGE --output OUT` in a process and SIGKILL it once its resume checkpoint passed ``at_step``."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2", "RASA_TELEMETRY_ENABLED": "false"}
    process = subprocess.Popen([sys.executable, "-m", "rasa_kd.cli", stage, "--output", str(out), "--no-progress"],
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    folder = out / "resume" / stage
    deadline = time.monotonic() + 300
    try:
        while time.monotonic() < deadline and process.poll() is None and _latest_step(folder) < at_step:
            time.sleep(0.01)
        process.send_signal(signal.SIGKILL)
    finally:
        process.kill()
        _, stderr = process.communicate(timeout=60)
    step = _latest_step(folder)
    assert at_step <= step < total_steps, f"the kill did not land mid-training (step {step}): {stderr.decode()[-2000:]}"
    return step


def _prepare(out: Path, source: Path, earlier: tuple, config) -> None:
    """A run folder holding ``earlier`` outputs of ``source`` and ``config`` as its config.yml."""
    from rasa_kd.distill.config import save_config

    out.mkdir(parents=True)
    for name in earlier:
        (shutil.copytree if (source / name).is_dir() else shutil.copy)(source / name, out / name)
    save_config(config, out / "config.yml")


# With `make test-slow`: a minute of training in processes (the default run must stay under 15 minutes); the
# tests above check the same resumption in-process, crash instead of kill.
@pytest.mark.slow
@pytest.mark.parametrize("stage", ["student", "teacher"])
def test_a_killed_training_stage_resumes_to_the_weights_of_an_uninterrupted_run(tmp_path, stage, bilstm_run, tiny_data, tiny_bert_dir):
    source = bilstm_run[0]
    shorter = {"student.training.epochs": 4} if stage == "student" else {"teacher.epochs": 10}
    # The killed run checkpoints after every step; the uninterrupted one at the end only (the default).
    config = tiny_distill_config(tiny_data, tiny_bert_dir, **shorter, **{"compute.checkpoint_minutes": 0})
    earlier = ("teacher", "transfer_set.jsonl", "transfer_set.json", "cache", "stages.json") if stage == "student" else ()
    killed, uninterrupted = tmp_path / "killed", tmp_path / "uninterrupted"
    _prepare(killed, source, earlier, config)
    _prepare(uninterrupted, source, earlier, tiny_distill_config(tiny_data, tiny_bert_dir, **shorter))
    total = 4 * 25 if stage == "student" else 10 * 7  # epochs x steps an epoch (400 sentences / 16; 54 / 8)
    _kill_during(stage, killed, at_step=total // 3, total_steps=total)

    pipeline.run_stage(stage, config, killed, progress=False)
    pipeline.run_stage(stage, load_config(uninterrupted / "config.yml"), uninterrupted, progress=False)
    assert not (killed / "resume" / stage).exists(), "the resume checkpoints outlived the finished stage"
    load = Teacher.load if stage == "teacher" else StudentModel.load
    mine, theirs = load(killed / stage), load(uninterrupted / stage)
    np.testing.assert_allclose(mine.logits(TEST_TEXTS), theirs.logits(TEST_TEXTS), atol=1e-4)

"""The one training loop of rasa-kd, used by the teacher, the students and the GPT-2 generator.

:class:`Trainer` runs epochs of length-grouped batches with a progress bar, optional TensorBoard
logs, dev scores after every epoch, early stopping, ``model-best`` / ``model-last`` checkpoints and a
record of every epoch. A model adds only what is its own, by overriding a few methods:
:meth:`Trainer.train_step` (its step and loss) and, where it has them, :meth:`Trainer.evaluate`,
:meth:`Trainer.learning_rate`, :meth:`Trainer.save` and :meth:`Trainer.get_weights` /
:meth:`Trainer.set_weights`.

``model-last`` is written in a ``finally`` block, so a crash or Ctrl-C after the first epoch still
leaves the last good weights on disk.

With a ``resume_dir``, a run can be killed at any moment (SIGKILL included) and the same call resumes it:
every ``checkpoint_seconds`` (after the step or epoch that passes them), and at the end of a run that
wrote one before, the loop writes a TensorFlow checkpoint of what :meth:`Trainer.checkpoint_objects` names (weights, optimizer state and step, the
dropout layers' random generators), the best weights so far and its own state (epoch, batches done,
the batch order's random state, losses and dev scores so far). ``tf.train.CheckpointManager`` moves a
checkpoint in only once it is whole, so a kill while writing leaves the previous one. A resumed run
replays the epoch's batch order and skips the batches done: it ends with the weights an uninterrupted
run gives (within float tolerance), provided the model's dropout uses Keras' checkpointable random
generators (:func:`rasa_kd.models.networks.use_checkpointable_dropout` before the model is built).
"""
import json
import logging
import math
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence

import numpy as np

from rasa_kd.distill import distribute
from rasa_kd.models.bert import length_grouped_batches
from rasa_kd.progress import progress_bar

logger = logging.getLogger(__name__)

STATE_FORMAT = 1  # of the loop's state inside a resume checkpoint


def random_generators(model) -> Dict[str, Any]:
    """The random generators of ``model``'s dropout layers, created now, by name, for a checkpoint.

    Keras creates a layer's generator at its first training call; creating them all here puts them in
    the checkpoint before that, and at the same point whether or not the run resumes.
    """
    found: Dict[str, Any] = {}
    for layer in model.submodules:  # tracking order: the same in every process that builds the model alike
        keras_generator = getattr(layer, "_random_generator", None)
        if keras_generator is None or not hasattr(keras_generator, "_maybe_init"):
            continue
        keras_generator._maybe_init()
        generator = getattr(keras_generator, "_generator", None)
        if generator is not None:  # None: legacy random ops (networks.use_checkpointable_dropout was not called)
            found[f"dropout_{len(found)}"] = generator
    return found


@dataclass
class EpochRecord:
    epoch: int
    loss: float
    learning_rate: Optional[float]
    seconds: float
    dev: Dict[str, float] = field(default_factory=dict)


@dataclass
class TrainingRecord:
    """What a run of the loop did: every epoch, the kept one, and where its checkpoints are."""

    epochs: List[EpochRecord]
    best_epoch: int
    best_score: float
    dev_metric: Optional[str]
    stopped_early: bool
    seconds: float
    steps: int
    checkpoints: Dict[str, str]
    examples: int = 0

    def as_dict(self) -> dict:
        return asdict(self)


class Trainer:
    """Epochs over ``lengths`` (one entry per training example) in length-grouped batches.

    ``dev_metric`` names the score of :meth:`evaluate` that picks the epoch to keep (``keep="best"``);
    ``keep="last"`` keeps the final epoch. With ``held_out_dev=False`` the dev sentences are training
    sentences: their score saturates early, so there is no early stopping and ties go to the later
    epoch. ``workdir`` (optional) receives ``model-best``, ``model-last`` and ``tensorboard/``.
    """

    description = "training"
    log_every = 20  # steps between TensorBoard points

    def __init__(self, lengths: Optional[Sequence[int]], epochs: int, batch_size: int, seed: int, *, workdir: Optional[Path] = None,
                 progress: bool = True, dev_metric: Optional[str] = None, patience: int = 0, held_out_dev: bool = True,
                 keep: str = "best", log_level: int = logging.INFO, resume_dir: Optional[Path] = None,
                 checkpoint_seconds: float = 300.0, resume_key: str = "", strategy=None):
        if keep not in ("best", "last"):
            raise ValueError(f"keep must be 'best' or 'last', got {keep!r}")
        self.lengths = list(lengths) if lengths is not None else None  # None: a model that overrides epoch_batches
        self.epochs, self.batch_size, self.seed = epochs, batch_size, seed
        self.workdir = Path(workdir) if workdir is not None else None
        self.progress, self.dev_metric, self.patience = progress, dev_metric, patience
        self.held_out_dev, self.keep, self.log_level = held_out_dev, keep, log_level
        self.resume_dir = Path(resume_dir) if resume_dir is not None else None
        self.checkpoint_seconds = checkpoint_seconds
        # A checkpoint of other data or settings is never resumed from: the caller's key names the inputs.
        self.strategy = strategy  # a tf.distribute strategy, or None: one device
        replicas = strategy.num_replicas_in_sync if strategy is not None else 1
        self.chief = distribute.is_chief(strategy)  # only the chief writes checkpoints and logs
        self.resume_key = json.dumps([resume_key, self.examples, epochs, batch_size, seed, keep, dev_metric, replicas])
        self.step_fn = None  # set by a model that uses the default train_step
        self._distributed = None  # step_fn across the strategy's replicas, traced once for this run
        self.global_step = 0

    @property
    def examples(self) -> int:
        return len(self.lengths)

    @property
    def total_steps(self) -> int:
        return self.steps_per_epoch() * self.epochs

    def steps_per_epoch(self) -> int:
        return math.ceil(self.examples / self.batch_size)

    def epoch_batches(self, rng: np.random.Generator, skip: int = 0) -> Iterable[np.ndarray]:
        """An epoch's batches (example indices) from batch ``skip`` on, in the order ``rng`` draws.

        Whatever it draws from ``rng`` is drawn before the first batch: the next epoch starts from the state after.
        """
        return length_grouped_batches(self.lengths, self.batch_size, rng)[skip:]

    # --- what a model overrides ------------------------------------------------------------------

    def train_step(self, batch: np.ndarray) -> float:
        """One optimisation step on the examples ``batch`` (indices); return its loss.

        The default runs the traced ``step_fn(*step_arrays(batch), scale)`` on one device (scale 1), or on
        each replica of the strategy with its part of the batch and the part's share as ``scale``.
        """
        if self.step_fn is None:
            raise NotImplementedError(f"{type(self).__name__} sets no step_fn and does not override train_step")
        if self.strategy is None:
            return float(self.step_fn(*self.step_arrays(batch), 1.0))
        if self._distributed is None:
            self._distributed = distribute.distributed_step(self.strategy, self.step_fn)
        parts = distribute.replica_parts(batch, self.strategy.num_replicas_in_sync)
        # A replica left without examples (a batch smaller than the replicas) steps on one with weight 0.
        arrays = [self.step_arrays(part if len(part) else batch[:1]) for part in parts]
        return distribute.run_distributed(self.strategy, self._distributed, arrays, [len(part) / len(batch) for part in parts])

    def step_arrays(self, batch: np.ndarray) -> tuple:
        """The arrays ``step_fn`` takes for the examples ``batch`` (before its ``scale``)."""
        raise NotImplementedError

    def evaluate(self) -> Dict[str, float]:
        """Dev scores after an epoch ({} when there is nothing to score)."""
        return {}

    def learning_rate(self, step: int) -> Optional[float]:
        """The learning rate at ``step``, for the record (None if the model does not say)."""
        return None

    def save(self, path: Path, info: Dict[str, Any]) -> None:
        """Write a checkpoint of the model to ``path`` (only called with a ``workdir``)."""

    def get_weights(self) -> Any:
        return None

    def set_weights(self, weights: Any) -> None:
        pass

    def checkpoint_objects(self) -> Dict[str, Any]:
        """What a resume checkpoint holds besides the loop's state: model, optimizer, random generators."""
        return {}

    # --- the loop --------------------------------------------------------------------------------

    def fit(self) -> TrainingRecord:
        """Train (or resume); leave the kept epoch's weights in the model and return the record."""
        with distribute.scope(self.strategy):
            return self._fit()

    def _fit(self) -> TrainingRecord:
        resume = _Resume(self.resume_dir, self.checkpoint_objects(), self.resume_key, self.get_weights()
                         if self.keep == "best" and self.dev_metric else None, self.chief) if self.resume_dir else None
        state = resume.restore() if resume else None
        rng = np.random.default_rng(self.seed)
        if state is None:
            state = {"epoch": 1, "batches_done": 0, "epoch_rng": rng.bit_generator.state, "losses": [], "epochs": [],
                     "best_score": None, "best_epoch": 0, "stale": 0, "stopped_early": False, "finished": False,
                     "seconds": 0.0, "global_step": 0, "has_best": False}
        else:
            logger.info("%s: resuming from %s at epoch %d, step %d", self.description, self.resume_dir, state["epoch"],
                        state["global_step"])
        epochs = [EpochRecord(**e) for e in state["epochs"]]
        best_score = -math.inf if state["best_score"] is None else state["best_score"]
        best_epoch, stale, stopped_early = state["best_epoch"], state["stale"], state["stopped_early"]
        best_weights = resume.best_weights() if resume and state["has_best"] else None
        self.global_step = state["global_step"]
        started, last_save = time.perf_counter() - state["seconds"], time.perf_counter()

        def record_state(**changes) -> None:
            """Bring ``state`` up to date (the next epoch reads its batch order from it); write it if resumable."""
            state.update(changes, epochs=[asdict(e) for e in epochs], best_epoch=best_epoch, stale=stale,
                         best_score=None if best_score == -math.inf else best_score, stopped_early=stopped_early,
                         seconds=time.perf_counter() - started, global_step=self.global_step,
                         has_best=best_weights is not None)
            if resume is not None:
                resume.save(state)

        done_before = state["finished"]  # killed after training, before what it made was saved: nothing to do
        writer = self._tensorboard() if not done_before else None
        bar = progress_bar(enabled=self.progress and not done_before, description=self.description,
                           total=self.total_steps, unit="step", initial=self.global_step)
        try:
            for epoch in range(state["epoch"], self.epochs + 1):
                if done_before:
                    break
                epoch_start, losses = time.perf_counter(), list(state["losses"])
                rng.bit_generator.state = state["epoch_rng"]
                skip = state["batches_done"]
                for done, batch in enumerate(self.epoch_batches(rng, skip), skip + 1):
                    losses.append(float(self.train_step(batch)))
                    self.global_step += 1
                    if writer is not None and self.global_step % self.log_every == 0:
                        self._scalars(writer, self.global_step, {"train/loss": losses[-1],
                                                                 "train/learning_rate": self.learning_rate(self.global_step)})
                    bar.update(1)
                    bar.set_postfix(epoch=epoch, loss=f"{np.mean(losses[-50:]):.4f}", refresh=False)
                    if resume is not None and time.perf_counter() - last_save >= self.checkpoint_seconds:
                        record_state(epoch=epoch, batches_done=done, losses=losses)
                        last_save = time.perf_counter()
                record = EpochRecord(epoch, float(np.mean(losses)), self.learning_rate(self.global_step),
                                     time.perf_counter() - epoch_start)
                record.dev = self.evaluate()
                epochs.append(record)
                if writer is not None:
                    self._scalars(writer, epoch, {"epoch/loss": record.loss, **{f"dev/{k}": v for k, v in record.dev.items()
                                                                                if k != "examples"}})
                    writer.flush()
                score = record.dev.get(self.dev_metric) if self.dev_metric else None
                logger.log(self.log_level, "%s epoch %d: loss %.4f%s", self.description, epoch, record.loss,
                           f", dev {self.dev_metric} {score:.4f}" if score is not None else "")
                if self.keep == "last" or score is None:
                    best_epoch = epoch
                elif score > best_score or (not self.held_out_dev and score >= best_score):
                    best_score, best_epoch, stale = score, epoch, 0
                    best_weights = self.get_weights()
                    if resume is not None:
                        resume.keep_best(best_weights)
                    self._checkpoint("model-best", {"epoch": epoch, f"dev_{self.dev_metric}": score})
                else:
                    stale += 1
                    if self.held_out_dev and self.patience and stale >= self.patience:
                        stopped_early = True
                        logger.info("early stopping: no better dev %s for %d epochs", self.dev_metric, stale)
                # The next epoch's batch order starts from the generator's state now.
                finished = stopped_early or epoch == self.epochs
                state.update(epoch=epoch + 1, batches_done=0, epoch_rng=rng.bit_generator.state, losses=[], finished=finished)
                # The end is checkpointed only after others were: a run shorter than checkpoint_seconds is cheaper to redo.
                if time.perf_counter() - last_save >= self.checkpoint_seconds or (finished and resume and resume.saved):
                    record_state()
                    last_save = time.perf_counter()
                if stopped_early:
                    break
        finally:
            bar.close()
            if epochs and not done_before:
                interrupted = len(epochs) < self.epochs and not stopped_early
                self._checkpoint("model-last", {"epoch": epochs[-1].epoch, "interrupted": interrupted})
        if best_weights is not None:
            self.set_weights(best_weights)
        checkpoints = {name: str(self.workdir / name) for name in ("model-best", "model-last")} if self.workdir else {}
        return TrainingRecord(epochs=epochs, best_epoch=best_epoch, best_score=float(best_score), dev_metric=self.dev_metric,
                              stopped_early=stopped_early, seconds=time.perf_counter() - started, steps=self.global_step,
                              checkpoints=checkpoints, examples=self.examples)

    def discard_checkpoints(self) -> None:
        """Delete the resume checkpoints (once what the run made is saved elsewhere)."""
        if self.resume_dir is not None:
            shutil.rmtree(self.resume_dir, ignore_errors=True)

    def _checkpoint(self, name: str, info: Dict[str, Any]) -> None:
        if self.workdir is not None and self.chief:
            self.save(self.workdir / name, info)

    def _tensorboard(self):
        if self.workdir is None or not self.chief:
            return None
        import tensorflow as tf

        self.workdir.mkdir(parents=True, exist_ok=True)
        return tf.summary.create_file_writer(str(self.workdir / "tensorboard"))

    @staticmethod
    def _scalars(writer, step: int, values: Dict[str, Optional[float]]) -> None:
        import tensorflow as tf

        with writer.as_default():
            for name, value in values.items():
                if value is not None:
                    tf.summary.scalar(name, value, step=step)


class _Resume:
    """The resume checkpoints of one run: ``tf.train.CheckpointManager`` over the model's objects, the best
    weights so far and the loop's state (JSON in a string variable, so the three are written as one)."""

    def __init__(self, folder: Path, objects: Dict[str, Any], key: str, weights: Optional[List[np.ndarray]], chief: bool = True):
        import tensorflow as tf

        self.folder, self.key = Path(folder), key
        # Every worker of a cluster saves (TensorFlow's rule); the others into a scratch folder they delete. All
        # read the chief's: resuming a multi-host run needs the run folder on a file system they share.
        self.scratch = None if chief else self.folder.parent / f".{self.folder.name}-worker-{os.getpid()}"
        self.state = tf.Variable("", dtype=tf.string, trainable=False)
        self.best = [tf.Variable(w, trainable=False) for w in weights] if weights is not None else []
        best = tf.train.Checkpoint(**{f"w{i}": v for i, v in enumerate(self.best)})
        self.checkpoint = tf.train.Checkpoint(loop_state=self.state, best=best, **objects)
        self.manager = tf.train.CheckpointManager(self.checkpoint, str(self.folder), max_to_keep=1)
        self.writer = self.manager if chief else tf.train.CheckpointManager(self.checkpoint, str(self.scratch), max_to_keep=1)
        self.saved = self.manager.latest_checkpoint is not None  # whether this run has a checkpoint to resume from

    def restore(self) -> Optional[dict]:
        """The loop's state of the latest checkpoint, with the objects restored; None to start afresh."""
        import tensorflow as tf

        latest = self.manager.latest_checkpoint
        if latest is None:
            return None
        try:
            state = json.loads(tf.train.load_checkpoint(latest).get_tensor("loop_state/.ATTRIBUTES/VARIABLE_VALUE"))
        except (tf.errors.OpError, ValueError) as error:
            logger.warning("cannot read the resume checkpoint %s (%s); starting afresh", latest, error)
            return None
        if state.get("format") != STATE_FORMAT or state.get("key") != self.key:
            logger.warning("the resume checkpoint in %s is of another run (other data or settings); starting afresh", self.folder)
            return None
        # Optimizer slots and hyper-parameters are created at the first step: restored then (deferred), not now.
        self.checkpoint.restore(latest).assert_existing_objects_matched().expect_partial()
        return state

    def best_weights(self) -> List[np.ndarray]:
        return [v.numpy() for v in self.best]

    def keep_best(self, weights: List[np.ndarray]) -> None:
        for variable, value in zip(self.best, weights):
            variable.assign(value)

    def save(self, state: dict) -> None:
        self.state.assign(json.dumps({**state, "format": STATE_FORMAT, "key": self.key}))
        self.writer.save(checkpoint_number=state["global_step"])
        self.saved = True
        if self.scratch is not None:
            shutil.rmtree(self.scratch, ignore_errors=True)

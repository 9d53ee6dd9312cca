"""The one training loop of rasa-kd, used by the teacher, the students and the GPT-2 generator.

:class:`Trainer` runs epochs of length-grouped batches with a progress bar, optional TensorBoard
logs, dev scores after every epoch, early stopping, ``model-best`` / ``model-last`` checkpoints and a
record of every epoch. A model adds only what is its own, by overriding a few methods:
:meth:`Trainer.train_step` (its step and loss) and, where it has them, :meth:`Trainer.evaluate`,
:meth:`Trainer.learning_rate`, :meth:`Trainer.save` and :meth:`Trainer.get_weights` /
:meth:`Trainer.set_weights`.

``model-last`` is written in a ``finally`` block, so a crash or Ctrl-C after the first epoch still
leaves the last good weights on disk.
"""
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from rasa_kd.models.bert import length_grouped_batches
from rasa_kd.progress import progress_bar

logger = logging.getLogger(__name__)


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

    def __init__(self, lengths: Sequence[int], epochs: int, batch_size: int, seed: int, *, workdir: Optional[Path] = None,
                 progress: bool = True, dev_metric: Optional[str] = None, patience: int = 0, held_out_dev: bool = True,
                 keep: str = "best", log_level: int = logging.INFO):
        if keep not in ("best", "last"):
            raise ValueError(f"keep must be 'best' or 'last', got {keep!r}")
        self.lengths = list(lengths)
        self.epochs, self.batch_size, self.seed = epochs, batch_size, seed
        self.workdir = Path(workdir) if workdir is not None else None
        self.progress, self.dev_metric, self.patience = progress, dev_metric, patience
        self.held_out_dev, self.keep, self.log_level = held_out_dev, keep, log_level
        self.global_step = 0

    @property
    def total_steps(self) -> int:
        return math.ceil(len(self.lengths) / self.batch_size) * self.epochs

    # --- what a model overrides ------------------------------------------------------------------

    def train_step(self, batch: np.ndarray) -> float:
        """One optimisation step on the examples ``batch`` (indices); return its loss."""
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

    # --- the loop --------------------------------------------------------------------------------

    def fit(self) -> TrainingRecord:
        """Train; leave the kept epoch's weights in the model and return the record."""
        writer = self._tensorboard()
        rng = np.random.default_rng(self.seed)
        epochs: List[EpochRecord] = []
        best_score, best_epoch, stale, stopped_early, best_weights = -math.inf, 0, 0, False, None
        started = time.perf_counter()
        bar = progress_bar(enabled=self.progress, description=self.description, total=self.total_steps, unit="step")
        try:
            for epoch in range(1, self.epochs + 1):
                epoch_start, losses = time.perf_counter(), []
                for batch in length_grouped_batches(self.lengths, self.batch_size, rng):
                    losses.append(float(self.train_step(batch)))
                    self.global_step += 1
                    if writer is not None and self.global_step % self.log_every == 0:
                        self._scalars(writer, self.global_step, {"train/loss": losses[-1],
                                                                 "train/learning_rate": self.learning_rate(self.global_step)})
                    bar.update(1)
                    bar.set_postfix(epoch=epoch, loss=f"{np.mean(losses[-50:]):.4f}", refresh=False)
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
                    continue
                if score > best_score or (not self.held_out_dev and score >= best_score):
                    best_score, best_epoch, stale = score, epoch, 0
                    best_weights = self.get_weights()
                    self._checkpoint("model-best", {"epoch": epoch, f"dev_{self.dev_metric}": score})
                else:
                    stale += 1
                    if self.held_out_dev and self.patience and stale >= self.patience:
                        stopped_early = True
                        logger.info("early stopping: no better dev %s for %d epochs", self.dev_metric, stale)
                        break
        finally:
            bar.close()
            if epochs:
                interrupted = len(epochs) < self.epochs and not stopped_early
                self._checkpoint("model-last", {"epoch": epochs[-1].epoch, "interrupted": interrupted})
        if best_weights is not None:
            self.set_weights(best_weights)
        checkpoints = {name: str(self.workdir / name) for name in ("model-best", "model-last")} if self.workdir else {}
        return TrainingRecord(epochs=epochs, best_epoch=best_epoch, best_score=float(best_score), dev_metric=self.dev_metric,
                              stopped_early=stopped_early, seconds=time.perf_counter() - started, steps=self.global_step,
                              checkpoints=checkpoints, examples=len(self.lengths))

    def _checkpoint(self, name: str, info: Dict[str, Any]) -> None:
        if self.workdir is not None:
            self.save(self.workdir / name, info)

    def _tensorboard(self):
        if self.workdir is None:
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

"""The student training loop: soft targets from the teacher's logits, dev-based early stopping,
``model-best`` / ``model-last`` checkpoints, TensorBoard logs and a progress bar.

The loop saves ``model-last`` in a ``finally`` block, so a crash or Ctrl-C after the first epoch
still leaves the last good weights on disk.
"""
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import List, Optional, Sequence

import numpy as np

from rasa_kd import bert
from rasa_kd.distill import losses
from rasa_kd.metrics import classification_scores
from rasa_kd.student import PAD, StudentModel, default_teacher_layers

logger = logging.getLogger(__name__)


@dataclass
class EpochRecord:
    epoch: int
    loss: float
    learning_rate: float
    seconds: float
    dev: dict = field(default_factory=dict)


@dataclass
class StudentTrainingResult:
    epochs: List[EpochRecord]
    best_epoch: int
    best_score: float
    dev_metric: str
    stopped_early: bool
    seconds: float
    steps: int
    checkpoints: dict

    def as_dict(self) -> dict:
        return asdict(self)


def learning_rate_schedule(settings, total_steps: int):
    """Linear warm-up to ``learning_rate``, then linear decay to 0, cosine decay, or constant."""
    import tensorflow as tf

    warmup = int(settings.warmup_ratio * total_steps)
    peak = settings.learning_rate
    shape = settings.schedule

    class Schedule(tf.keras.optimizers.schedules.LearningRateSchedule):
        def __call__(self, step):
            step = tf.cast(step, tf.float32)
            warm = peak * (step + 1.0) / max(warmup, 1)
            progress = tf.clip_by_value((step - warmup) / max(total_steps - warmup, 1), 0.0, 1.0)
            if shape == "linear":
                after = peak * (1.0 - progress)
            elif shape == "cosine":
                after = peak * 0.5 * (1.0 + tf.cos(math.pi * progress))
            else:
                after = tf.constant(peak, tf.float32)
            return tf.where(step < warmup, warm, after)

        def get_config(self):
            return {"peak": peak, "warmup": warmup, "total_steps": total_steps, "shape": shape}

    return Schedule()


class _IntermediateTargets:
    """TinyBERT's hidden-state and attention targets: the teacher is run on each batch."""

    def __init__(self, student: StudentModel, teacher, settings):
        import tensorflow as tf

        s_layers = student.network.config.num_hidden_layers
        t_layers = teacher.model.config.num_hidden_layers
        chosen = student.architecture.get("teacher_layers") or default_teacher_layers(s_layers, t_layers)
        self.attention_pairs = list(enumerate(chosen))
        # hidden_states[0] is the embedding output; layer i's output is hidden_states[i + 1].
        self.hidden_pairs = [(0, 0)] + [(s + 1, t + 1) for s, t in self.attention_pairs]
        self.projection = tf.keras.layers.Dense(teacher.model.config.hidden_size, name="hidden_projection")
        self.projection.build((None, None, student.network.config.hidden_size))
        self.teacher = teacher
        self.hidden_weight = settings.hidden_loss_weight
        self.attention_weight = settings.attention_loss_weight

    def loss(self, student_out, teacher_ids, mask):
        import tensorflow as tf

        teacher_out = self.teacher.model(
            input_ids=teacher_ids, attention_mask=mask, token_type_ids=tf.zeros_like(teacher_ids),
            output_hidden_states=True, output_attentions=True, training=False,
        )
        total = 0.0
        if self.hidden_weight:
            total += self.hidden_weight * losses.hidden_state_loss(
                student_out.hidden_states, teacher_out.hidden_states, self.projection, mask, self.hidden_pairs)
        if self.attention_weight:
            total += self.attention_weight * losses.attention_loss(
                student_out.attentions, teacher_out.attentions, mask, self.attention_pairs)
        return total


def _train_step(student: StudentModel, optimizer, settings, intermediate: Optional[_IntermediateTargets]):
    import tensorflow as tf

    network = student.network
    variables = list(network.trainable_variables)
    if intermediate is not None:
        variables += intermediate.projection.trainable_variables
    ids_spec = tf.TensorSpec([None, None], tf.int32)

    @tf.function(input_signature=[ids_spec, ids_spec, ids_spec, tf.TensorSpec([None, None], tf.float32), tf.TensorSpec([None], tf.int32)])
    def step(input_ids, attention_mask, teacher_ids, teacher_logits, gold):
        with tf.GradientTape() as tape:
            if student.kind == "bilstm":
                logits = network(input_ids, training=True)
                extra = 0.0
            else:
                wants = intermediate is not None
                out = network(input_ids=input_ids, attention_mask=attention_mask, training=True,
                              output_hidden_states=wants, output_attentions=wants)
                logits = out.logits
                extra = intermediate.loss(out, teacher_ids, attention_mask) if wants else 0.0
            loss = losses.distillation_loss(logits, teacher_logits, gold, settings.loss, settings.temperature, settings.alpha) + extra
        gradients = tape.gradient(loss, variables)
        gradients, _ = tf.clip_by_global_norm(gradients, settings.clip_norm)
        optimizer.apply_gradients(zip(gradients, variables))
        return loss

    return step


def evaluate_ids(student: StudentModel, ids: Sequence[np.ndarray], gold: Sequence[str]) -> dict:
    predicted = [student.labels[i] for i in student.logits_of_ids(ids).argmax(axis=1)]
    return classification_scores(list(gold), predicted)


def train_student(
    student: StudentModel,
    train_ids: Sequence[np.ndarray],
    teacher_logits: np.ndarray,
    gold: np.ndarray,
    dev_ids: Sequence[np.ndarray],
    dev_gold: Sequence[str],
    settings,
    workdir: Path,
    teacher=None,
    teacher_train_ids: Optional[Sequence[Sequence[int]]] = None,
    progress: bool = True,
    held_out_dev: bool = True,
) -> StudentTrainingResult:
    """Train ``student`` on the transfer set; keep the weights of the best dev epoch in the network.

    ``gold`` holds label indices, -1 where a sentence has no gold intent. ``teacher`` and
    ``teacher_train_ids`` are needed only for TinyBERT's intermediate losses. With
    ``held_out_dev=False`` the "dev" sentences are training sentences: their score saturates early,
    so there is no early stopping and ties go to the later epoch.
    """
    import tensorflow as tf

    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    intermediate = None
    if student.kind == "tinybert" and (settings.hidden_loss_weight or settings.attention_loss_weight):
        if teacher is None or teacher_train_ids is None:
            raise ValueError("TinyBERT intermediate losses need the teacher and its token ids")
        intermediate = _IntermediateTargets(student, teacher, settings)
    steps_per_epoch = math.ceil(len(train_ids) / settings.batch_size)
    total_steps = steps_per_epoch * settings.epochs
    schedule = learning_rate_schedule(settings, total_steps)
    optimizer = tf.keras.optimizers.Adam(learning_rate=schedule)
    step = _train_step(student, optimizer, settings, intermediate)
    writer = tf.summary.create_file_writer(str(workdir / "tensorboard"))
    rng = np.random.default_rng(settings.random_seed)
    lengths = [len(x) for x in train_ids]
    teacher_logits = np.asarray(teacher_logits, dtype=np.float32)
    gold = np.asarray(gold, dtype=np.int32)

    best_path, last_path = workdir / "model-best", workdir / "model-last"
    epochs: List[EpochRecord] = []
    best_score, best_epoch, stale, stopped_early = -math.inf, 0, 0, False
    best_weights = None
    started = time.perf_counter()
    global_step = 0
    bar = _bar(total_steps, progress)
    try:
        for epoch in range(1, settings.epochs + 1):
            epoch_start, epoch_losses = time.perf_counter(), []
            for batch in bert.length_grouped_batches(lengths, settings.batch_size, rng):
                input_ids, mask = bert.pad([train_ids[i] for i in batch], PAD)
                if intermediate is not None:
                    teacher_ids, _ = bert.pad([teacher_train_ids[i] for i in batch], teacher.tokenizer.pad_token_id)
                else:
                    teacher_ids = input_ids
                loss = float(step(input_ids, mask, teacher_ids, teacher_logits[batch], gold[batch]))
                epoch_losses.append(loss)
                global_step += 1
                if global_step % 20 == 0:
                    with writer.as_default():
                        tf.summary.scalar("train/loss", loss, step=global_step)
                        tf.summary.scalar("train/learning_rate", float(schedule(global_step)), step=global_step)
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(epoch=epoch, loss=f"{np.mean(epoch_losses[-50:]):.4f}", refresh=False)
            record = EpochRecord(epoch, float(np.mean(epoch_losses)), float(schedule(global_step)), time.perf_counter() - epoch_start)
            record.dev = evaluate_ids(student, dev_ids, dev_gold)
            epochs.append(record)
            score = record.dev[settings.dev_metric]
            with writer.as_default():
                tf.summary.scalar("epoch/loss", record.loss, step=epoch)
                for metric in ("accuracy", "micro_f1", "macro_f1", "mcc"):
                    tf.summary.scalar(f"dev/{metric}", record.dev[metric], step=epoch)
            writer.flush()
            logger.info("student epoch %d: loss %.4f, dev %s %.4f", epoch, record.loss, settings.dev_metric, score)
            if score > best_score or (not held_out_dev and score >= best_score):
                best_score, best_epoch, stale = score, epoch, 0
                best_weights = student.network.get_weights()
                student.save(best_path, overwrite=True, extra={"training": {"epoch": epoch, f"dev_{settings.dev_metric}": score}})
            else:
                stale += 1
                if held_out_dev and settings.early_stopping_patience and stale >= settings.early_stopping_patience:
                    stopped_early = True
                    logger.info("early stopping: no better dev %s for %d epochs", settings.dev_metric, stale)
                    break
    finally:
        if bar is not None:
            bar.close()
        if epochs:
            interrupted = len(epochs) < settings.epochs and not stopped_early
            student.save(last_path, overwrite=True, extra={"training": {"epoch": epochs[-1].epoch, "interrupted": interrupted}})
    if best_weights is not None:
        student.network.set_weights(best_weights)
    return StudentTrainingResult(
        epochs=epochs,
        best_epoch=best_epoch,
        best_score=float(best_score),
        dev_metric=settings.dev_metric,
        stopped_early=stopped_early,
        seconds=time.perf_counter() - started,
        steps=global_step,
        checkpoints={"model-best": str(best_path), "model-last": str(last_path)},
    )


def _bar(total: int, enabled: bool):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc="training student", unit="step")

"""Training a student on the transfer set: the soft-target step (with TinyBERT's intermediate losses
for a tiny-BERT, if asked) on the one loop, dev-based early stopping and checkpoints included."""
import math
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from rasa_kd.distill import losses
from rasa_kd.distill.evaluate import classification_scores
from rasa_kd.distill import distribute
from rasa_kd.distill.distribute import Acceleration, apply_gradients, scaled_loss, summed_gradients, unscaled_gradients
from rasa_kd.distill.training import Trainer, TrainingRecord, random_generators
from rasa_kd.models import bert
from rasa_kd.models.networks import PAD, default_teacher_layers
from rasa_kd.models.student import StudentModel


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


def _distillation_step(student: StudentModel, optimizer, settings, intermediate: Optional[_IntermediateTargets],
                       jit_compile: Optional[bool] = None):
    import tensorflow as tf

    network = student.network
    variables = list(network.trainable_variables)
    if intermediate is not None:
        variables += intermediate.projection.trainable_variables
    ids_spec = tf.TensorSpec([None, None], tf.int32)

    @tf.function(input_signature=[ids_spec, ids_spec, ids_spec, tf.TensorSpec([None, None], tf.float32), tf.TensorSpec([None], tf.int32),
                                  tf.TensorSpec([], tf.float32)], jit_compile=jit_compile)
    def step(input_ids, attention_mask, teacher_ids, teacher_logits, gold, scale):
        """One step on a batch, or on a replica's part of it (``scale``: the part's share of the batch)."""
        with tf.GradientTape() as tape:
            if student.kind == "bilstm":
                logits = network(input_ids, training=True)
                extra = 0.0
            else:
                wants = intermediate is not None
                out = network(input_ids=input_ids, attention_mask=attention_mask, training=True,
                              output_hidden_states=wants, output_attentions=wants)
                logits = tf.cast(out.logits, tf.float32)  # float16 under mixed precision: the loss is computed in float32
                extra = intermediate.loss(out, teacher_ids, attention_mask) if wants else 0.0
            loss = losses.distillation_loss(logits, teacher_logits, gold, settings.loss, settings.temperature, settings.alpha) + extra
            loss = loss * scale
            scaled = scaled_loss(optimizer, loss)
        gradients = summed_gradients(unscaled_gradients(optimizer, tape.gradient(scaled, variables)))
        gradients, _ = tf.clip_by_global_norm(gradients, settings.clip_norm)
        apply_gradients(optimizer, gradients, variables)
        return loss

    return step


def evaluate_ids(student: StudentModel, ids: Sequence[np.ndarray], gold: Sequence[str]) -> dict:
    predicted = [student.labels[i] for i in student.logits_of_ids(ids).argmax(axis=1)]
    return classification_scores(list(gold), predicted)


class StudentTrainer(Trainer):
    """The student's step: the distillation loss against the teacher's logits (and gold intents)."""

    description = "training student"

    def __init__(self, student: StudentModel, train_ids, teacher_logits: Optional[np.ndarray], gold: Optional[np.ndarray], dev_ids,
                 dev_gold, settings, workdir: Optional[Path], intermediate: Optional[_IntermediateTargets], teacher_train_ids,
                 teacher_pad_id: int, progress: bool, held_out_dev: bool, acceleration: Acceleration = Acceleration(), **resume):
        import tensorflow as tf

        super().__init__([len(x) for x in train_ids] if train_ids is not None else None, settings.epochs, settings.batch_size,
                         settings.random_seed, workdir=workdir, progress=progress, dev_metric=settings.dev_metric,
                         patience=settings.early_stopping_patience, held_out_dev=held_out_dev, **resume)
        self.student, self.train_ids, self.dev_ids, self.dev_gold = student, train_ids, dev_ids, dev_gold
        self.teacher_logits = np.asarray(teacher_logits, dtype=np.float32) if teacher_logits is not None else None
        self.gold = np.asarray(gold, dtype=np.int32) if gold is not None else None
        self.intermediate, self.teacher_train_ids, self.teacher_pad_id = intermediate, teacher_train_ids, teacher_pad_id
        self.schedule = learning_rate_schedule(settings, self.total_steps)
        # Mixed precision and XLA are for a tiny-BERT on GPUs; a BiLSTM stays float32 (on GPUs it runs cuDNN's fused kernel).
        acceleration = acceleration if student.kind == "tinybert" else Acceleration()
        self.optimizer = acceleration.optimizer(tf.keras.optimizers.Adam(learning_rate=self.schedule))
        self.step_fn = _distillation_step(student, self.optimizer, settings, intermediate, acceleration.jit_compile(self.strategy))

    def step_arrays(self, batch: np.ndarray) -> tuple:
        input_ids, mask = bert.pad([self.train_ids[i] for i in batch], PAD)
        if self.intermediate is not None:
            teacher_ids, _ = bert.pad([self.teacher_train_ids[i] for i in batch], self.teacher_pad_id)
        else:
            teacher_ids = input_ids
        return input_ids, mask, teacher_ids, self.teacher_logits[batch], self.gold[batch]

    def learning_rate(self, step: int) -> float:
        return float(self.schedule(step))

    def evaluate(self) -> dict:
        return evaluate_ids(self.student, self.dev_ids, self.dev_gold)

    def save(self, path: Path, info: dict) -> None:
        self.student.save(path, overwrite=True, extra={"training": info})

    def get_weights(self):
        return self.student.network.get_weights()

    def set_weights(self, weights) -> None:
        self.student.network.set_weights(weights)

    def checkpoint_objects(self) -> dict:
        objects = {"network": self.student.network, "optimizer": self.optimizer, **random_generators(self.student.network)}
        if self.intermediate is not None:
            objects["hidden_projection"] = self.intermediate.projection
        return objects


class StreamingStudentTrainer(StudentTrainer):
    """The same step on a transfer set read shard by shard from disk (:mod:`rasa_kd.distill.streaming`)."""

    def __init__(self, student: StudentModel, stream, *args, **kwargs):
        self.stream = stream  # before the loop's set-up, which counts examples and steps
        super().__init__(student, None, None, None, *args, **kwargs)

    @property
    def examples(self) -> int:
        return self.stream.examples

    def steps_per_epoch(self) -> int:
        return self.stream.steps_per_epoch()

    def epoch_batches(self, rng: np.random.Generator, skip: int = 0):
        return self.stream.epoch(rng, skip)

    def step_arrays(self, batch: np.ndarray) -> tuple:
        ids, offsets, logits, gold = self.stream.current
        teacher_rows = [ids[offsets[i] : offsets[i + 1]] for i in batch]
        input_ids, mask = bert.pad([self.student.vocab.token_map[row] for row in teacher_rows], PAD)
        teacher_ids = bert.pad(teacher_rows, self.teacher_pad_id)[0] if self.intermediate is not None else input_ids
        return input_ids, mask, teacher_ids, logits[batch], gold[batch]


def train_student(
    student: StudentModel,
    train_ids: Sequence[np.ndarray],
    teacher_logits: np.ndarray,
    gold: np.ndarray,
    dev_ids: Sequence[np.ndarray],
    dev_gold: Sequence[str],
    settings,
    workdir: Optional[Path],
    teacher=None,
    teacher_train_ids: Optional[Sequence[Sequence[int]]] = None,
    progress: bool = True,
    held_out_dev: bool = True,
    resume_dir: Optional[Path] = None,
    checkpoint_seconds: float = 300.0,
    resume_key: str = "",
    strategy=None,
    stream=None,
    acceleration: Acceleration = Acceleration(),
) -> TrainingRecord:
    """Train ``student`` on the transfer set; keep the weights of the best dev epoch in the network.

    ``gold`` holds label indices, -1 where a sentence has no gold intent. ``teacher`` and
    ``teacher_train_ids`` are needed only for TinyBERT's intermediate losses. With
    ``held_out_dev=False`` the "dev" sentences are training sentences (see :class:`Trainer`). With
    ``resume_dir`` the run checkpoints there and a rerun resumes it (see :mod:`rasa_kd.distill.training`).
    With ``strategy`` (``tf.distribute``) each step is spread over its replicas; build ``student`` in its
    scope (``distribute.scope(strategy)``). With ``stream`` (a :class:`rasa_kd.distill.streaming.ShardStream`)
    the transfer set is read from its shards and ``train_ids``, ``teacher_logits``, ``gold`` and
    ``teacher_train_ids`` are None. ``acceleration`` (mixed precision, XLA) applies to a tiny-BERT; build it
    inside ``acceleration.building()``.
    """
    intermediate = None
    with distribute.scope(strategy):
        if student.kind == "tinybert" and (settings.hidden_loss_weight or settings.attention_loss_weight):
            if teacher is None or (teacher_train_ids is None and stream is None):
                raise ValueError("TinyBERT intermediate losses need the teacher and its token ids")
            intermediate = _IntermediateTargets(student, teacher, settings)
        pad_id = teacher.tokenizer.pad_token_id if teacher is not None else PAD
        common = (dev_ids, dev_gold, settings, Path(workdir) if workdir is not None else None, intermediate, teacher_train_ids,
                  pad_id, progress, held_out_dev, acceleration)
        resume = dict(resume_dir=resume_dir, checkpoint_seconds=checkpoint_seconds, resume_key=resume_key, strategy=strategy)
        if stream is not None:
            trainer = StreamingStudentTrainer(student, stream, *common, **resume)
        else:
            trainer = StudentTrainer(student, train_ids, teacher_logits, gold, *common, **resume)
    return trainer.fit()

"""Fine-tuning the BERT teacher: its step and loss (cross-entropy on the gold intents, and towards the uniform
distribution on synthetic out-of-scope sentences) on the one loop."""
import datetime
import logging
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import numpy as np

from rasa_kd.distill.augment import MASK
from rasa_kd.distill.outliers import make_outliers
from rasa_kd.distill import distribute
from rasa_kd.distill.distribute import Acceleration, apply_gradients, scaled_loss, summed_gradients, unscaled_gradients
from rasa_kd.distill.training import Trainer, TrainingRecord, random_generators
from rasa_kd.errors import ConfigError, DataError
from rasa_kd.models import bert
from rasa_kd.models.networks import use_checkpointable_dropout
from rasa_kd.models.teacher import Teacher, TeacherSettings

Examples = Tuple[Sequence[str], Sequence[str]]  # (texts, intents)


class TeacherTrainer(Trainer):
    """Cross-entropy on the gold intent, AdamW with linear warm-up and decay; keeps the last epoch."""

    description = "fine-tuning teacher"

    def __init__(self, teacher: Teacher, ids, targets: np.ndarray, dev: Optional[Examples], progress: bool,
                 acceleration: Acceleration = Acceleration(), **resume):
        settings = teacher.settings
        super().__init__([len(x) for x in ids], settings.epochs, settings.batch_size, settings.random_seed, progress=progress,
                         dev_metric="accuracy" if dev is not None else None, keep="last",
                         log_level=logging.INFO if dev is not None else logging.DEBUG, **resume)
        from transformers import create_optimizer

        self.teacher, self.ids, self.targets, self.dev = teacher, ids, targets, dev
        optimizer, _ = create_optimizer(
            init_lr=settings.learning_rate,
            num_train_steps=self.total_steps,
            num_warmup_steps=int(settings.warmup_ratio * self.total_steps),
            weight_decay_rate=settings.weight_decay,
        )
        self.optimizer = acceleration.optimizer(optimizer)
        self.step_fn = _cross_entropy_step(teacher.model, self.optimizer, settings.outlier_weight, settings.label_smoothing,
                                           acceleration.jit_compile(self.strategy))

    def step_arrays(self, batch: np.ndarray) -> tuple:
        input_ids, mask = bert.pad([self.ids[i] for i in batch], self.teacher.tokenizer.pad_token_id)
        return input_ids, mask, self.targets[batch]

    def evaluate(self) -> dict:
        if self.dev is None:
            return {}
        texts, gold = self.dev
        predicted = self.teacher.logits(texts).argmax(axis=1)
        return {"accuracy": float(np.mean([self.teacher.labels[p] == g for p, g in zip(predicted, gold)]))}

    def checkpoint_objects(self) -> dict:
        return {"model": self.teacher.model, "optimizer": self.optimizer, **random_generators(self.teacher.model)}


def fine_tune_teacher(
    texts: Sequence[str],
    intents: Sequence[str],
    settings: TeacherSettings,
    dev: Optional[Examples] = None,
    progress: bool = True,
    resume_dir: Optional[Path] = None,
    checkpoint_seconds: float = 300.0,
    resume_key: str = "",
    strategy=None,
    acceleration: Acceleration = Acceleration(),
) -> Tuple[Teacher, TrainingRecord]:
    """Fine-tune ``settings.model`` to predict ``intents`` from ``texts``.

    Labels are the sorted distinct intents, so label ids do not depend on data order. ``dev``
    (texts, intents) is scored after every epoch for the record; it does not change training. With
    ``resume_dir`` the run checkpoints there and a rerun resumes it (see :mod:`rasa_kd.distill.training`);
    ``strategy`` (``tf.distribute``) spreads each step over its replicas (see :mod:`rasa_kd.distill.distribute`);
    ``acceleration`` turns on mixed precision or XLA (for GPUs).
    """
    import tensorflow as tf

    if len(texts) != len(intents):
        raise DataError(f"got {len(texts)} texts but {len(intents)} intents")
    texts, intents, given_outliers = split_out_of_scope(texts, intents, settings)
    labels = sorted(set(intents))
    if len(labels) < 2:
        raise DataError(f"the teacher needs at least 2 intents to classify, found {len(labels)}: {labels}")
    settings = settings.for_examples(len(texts))
    model_dir = bert.resolve_model_dir(settings.model)
    use_checkpointable_dropout()
    tf.keras.utils.set_random_seed(settings.random_seed)
    with distribute.scope(strategy), acceleration.building():
        model = bert.load_sequence_classifier(model_dir, labels)
        model.bert.embeddings.trainable = settings.train_embeddings
    max_positions = getattr(model.config, "max_position_embeddings", 512)
    if settings.max_seq_length > max_positions:
        raise ConfigError(f"'max_seq_length' is {settings.max_seq_length} but {model_dir} supports at most {max_positions}")
    teacher = Teacher(model, bert.load_tokenizer(model_dir), labels, settings, {"base_model": str(model_dir)})

    index = {label: i for i, label in enumerate(labels)}
    synthetic = make_outliers(texts, intents, teacher.tokenizer.get_vocab(), settings.outlier_count(len(texts)), settings.random_seed)
    outliers = given_outliers + synthetic
    masked_texts, masked_intents = masked_copies(texts, intents, settings.masked_count(len(texts)), settings.random_seed)
    # Target -1: an out-of-scope sentence, trained towards the uniform distribution over the intents.
    targets = np.array([index[intent] for intent in list(intents) + masked_intents] + [-1] * len(outliers), dtype=np.int32)
    with distribute.scope(strategy):  # the optimizer's variables too
        trainer = TeacherTrainer(teacher, teacher.encode(list(texts) + masked_texts + outliers), targets, dev, progress, acceleration, resume_dir=resume_dir,
                                 checkpoint_seconds=checkpoint_seconds, resume_key=resume_key, strategy=strategy)
    record = trainer.fit()
    teacher.record.update({
        "trained": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        # The teacher record's own shape, as rasa-kd has always written it.
        "training": {"examples": len(texts), "masked_copies": len(masked_texts), "synthetic_outliers": len(synthetic), "given_outliers": len(given_outliers), "steps": record.steps, "seconds": record.seconds,
                     "epochs": [{"epoch": e.epoch, "loss": e.loss, "seconds": e.seconds, "dev_accuracy": e.dev.get("accuracy")}
                                for e in record.epochs]},
    })
    return teacher, record


def masked_copies(texts: Sequence[str], intents: Sequence[str], count: int, seed: int,
                  mask_prob: float = 0.1) -> Tuple[List[str], List[str]]:
    """``count`` training sentences drawn at random, each word hidden behind [MASK] at ``mask_prob`` and one at
    least, with their intents: what the transfer set's masking rule makes, labelled."""
    rng = np.random.default_rng([seed, 1])  # its own stream: the outliers a seed makes stay the same
    out_texts, out_intents = [], []
    for i in rng.integers(0, len(texts), size=count):
        words = texts[i].split()
        if not words:
            continue
        hidden = rng.random(len(words)) < mask_prob
        hidden[rng.integers(len(words))] = True
        out_texts.append(" ".join(MASK if h else w for w, h in zip(words, hidden)))
        out_intents.append(intents[i])
    return out_texts, out_intents


def split_out_of_scope(texts: Sequence[str], intents: Sequence[str], settings: TeacherSettings
                       ) -> Tuple[List[str], List[str], List[str]]:
    """(in-scope texts, their intents, out-of-scope sentences): the examples of ``out_of_scope_intent`` and the
    sentences of ``out_of_scope_file`` are the out-of-scope ones."""
    from rasa_kd.distill.confidence import read_out_of_scope

    name = settings.out_of_scope_intent
    if name is not None and name not in intents:
        raise DataError(f"'out_of_scope_intent' is {name!r} but no training example has that intent; "
                        f"the intents are {', '.join(sorted(set(intents)))}")
    kept = [(t, i) for t, i in zip(texts, intents) if i != name]
    outliers = [t for t, i in zip(texts, intents) if name is not None and i == name]
    if settings.out_of_scope_file:
        outliers += read_out_of_scope(Path(settings.out_of_scope_file), "out_of_scope_file")
    return [t for t, _ in kept], [i for _, i in kept], outliers


def _cross_entropy_step(model, optimizer, outlier_weight: float, label_smoothing: float = 0.0,
                        jit_compile: Optional[bool] = None):
    """One AdamW step: cross-entropy on the gold intent, smoothed (``label_smoothing`` of the target spread over every
    intent); target -1 (out of scope) is cross-entropy to the uniform distribution, ``logsumexp(logits) -
    mean(logits)``, times ``outlier_weight``."""
    import tensorflow as tf

    spec = tf.TensorSpec([None, None], tf.int32)

    @tf.function(input_signature=[spec, spec, tf.TensorSpec([None], tf.int32), tf.TensorSpec([], tf.float32)], jit_compile=jit_compile)
    def step(input_ids, attention_mask, targets, scale):
        """One step on a batch, or on a replica's part of it (``scale``: the part's share of the batch)."""
        with tf.GradientTape() as tape:
            logits = model(
                input_ids=input_ids,
                attention_mask=attention_mask,
                token_type_ids=tf.zeros_like(input_ids),
                training=True,
            ).logits  # [batch, labels]
            logits = tf.cast(logits, tf.float32)  # float16 under mixed precision: the loss is computed in float32
            in_scope = targets >= 0
            gold = tf.keras.losses.sparse_categorical_crossentropy(tf.maximum(targets, 0), logits, from_logits=True)
            uniform = tf.reduce_logsumexp(logits, axis=-1) - tf.reduce_mean(logits, axis=-1)
            gold = (1.0 - label_smoothing) * gold + label_smoothing * uniform
            loss = tf.reduce_mean(tf.where(in_scope, gold, outlier_weight * uniform)) * scale
            scaled = scaled_loss(optimizer, loss)
        gradients = summed_gradients(unscaled_gradients(optimizer, tape.gradient(scaled, model.trainable_variables)))
        gradients, _ = tf.clip_by_global_norm(gradients, 1.0)
        apply_gradients(optimizer, gradients, model.trainable_variables)
        return loss

    return step

"""The student networks (TensorFlow): the BiLSTM of Tang et al. and a small BERT, built from their
settings, optionally initialised from the teacher, and traced for inference."""
import dataclasses
import logging
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np

from rasa_kd.errors import ConfigError
from rasa_kd.io_utils import atomic_write

logger = logging.getLogger(__name__)

PAD, UNK = 0, 1  # the student vocabulary's first ids


def use_checkpointable_dropout() -> None:
    """Make Keras layers built from now on draw dropout masks from ``tf.random.Generator`` objects, whose state a
    checkpoint holds, so a resumed training run draws the masks an uninterrupted one would (the default legacy
    random ops restart their sequence in a new process). Call before building a model to train."""
    import tensorflow as tf

    tf.keras.backend.experimental.enable_tf_random_generator()


def build_bilstm(settings, vocab_size: int, num_labels: int, embeddings: Optional[np.ndarray], embedding_dim: int):
    """Embeddings -> stacked BiLSTM (final states of both directions) -> ReLU layer -> logits."""
    import tensorflow as tf

    layers = tf.keras.layers
    ids = layers.Input(shape=(None,), dtype=tf.int32, name="input_ids")
    initializer = tf.keras.initializers.Constant(embeddings) if embeddings is not None else "uniform"
    x = layers.Embedding(vocab_size, embedding_dim, mask_zero=True, embeddings_initializer=initializer,
                         trainable=settings.train_embeddings is not False, name="embedding")(ids)  # null: as from 2,000 examples
    if settings.multichannel:
        if embeddings is None:
            raise ConfigError("'student.bilstm.multichannel' needs 'student.bilstm.embeddings' teacher or contextual, not random")
        static = layers.Embedding(
            vocab_size, embedding_dim, mask_zero=True, embeddings_initializer=initializer, trainable=False, name="embedding_static"
        )(ids)
        x = layers.Concatenate(name="channels")([x, static])
    for index in range(settings.layers):
        last = index == settings.layers - 1
        x = layers.Bidirectional(layers.LSTM(settings.hidden_units, return_sequences=not last), name=f"bilstm_{index}")(x)
    x = layers.Dropout(settings.dropout)(x)
    x = layers.Dense(settings.dense_units, activation="relu", name="dense")(x)
    x = layers.Dropout(settings.dropout)(x)
    logits = layers.Dense(num_labels, name="logits")(x)
    return tf.keras.Model(ids, logits, name="bilstm_student")


def tinybert_config(settings, vocab_size: int, labels: Sequence[str]):
    from transformers import BertConfig

    if settings.hidden_size % settings.heads:
        raise ConfigError(
            f"'student.tinybert.hidden_size' ({settings.hidden_size}) must be a multiple of 'heads' ({settings.heads})"
        )
    return BertConfig(
        vocab_size=vocab_size,
        hidden_size=settings.hidden_size,
        num_hidden_layers=settings.layers,
        num_attention_heads=settings.heads,
        intermediate_size=settings.intermediate_size,
        hidden_act=settings.activation,
        hidden_dropout_prob=settings.dropout,
        attention_probs_dropout_prob=settings.dropout,
        max_position_embeddings=settings.max_seq_length,
        pad_token_id=PAD,
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={label: i for i, label in enumerate(labels)},
    )


def build_tinybert(settings, vocab, labels: Sequence[str], teacher=None, seed: int = 0, embeddings: Optional[np.ndarray] = None):
    """A small TF BERT classifier; its word embeddings ``embeddings`` (and its layers, with init: teacher,
    copied from the teacher)."""
    import tensorflow as tf
    from transformers import TFBertForSequenceClassification

    tf.keras.utils.set_random_seed(seed)
    model = TFBertForSequenceClassification(tinybert_config(settings, vocab.size, labels))
    model(model.dummy_inputs, training=False)
    if teacher is not None and settings.init == "teacher":
        _check_copyable(settings, teacher.model.config)
        copy_teacher_layers(model, teacher, vocab, settings)
    if embeddings is not None:
        model.bert.embeddings.weight.assign(embeddings)
    return model


def embedding_source(kind: str, settings, teacher, fitted_on: np.ndarray,
                     cache_dir: Optional[Path] = None) -> Callable[[np.ndarray], np.ndarray]:
    """Teacher WordPiece ids -> a student's initial embedding rows: the teacher's rows (its contextual rows with
    ``embeddings: contextual``, kept in ``cache_dir`` when given), as they are for a BiLSTM and a tiny-BERT
    copying the teacher, else projected to the tiny-BERT's width by the principal components of the rows
    of ``fitted_on`` (the student vocabulary's teacher ids)."""
    table = teacher.model.get_input_embeddings().weight.numpy()
    # A tiny-BERT copying the teacher's layers keeps the teacher's own rows, which those layers read.
    if settings.embeddings == "contextual" and (kind == "bilstm" or settings.init == "random"):
        table = contextual_table(teacher, table, cache_dir=cache_dir)
    if kind == "bilstm" or settings.init == "teacher" or table.shape[1] == settings.hidden_size:
        return lambda ids: table[ids]
    project = fit_projection(table[fitted_on], settings.hidden_size)
    return lambda ids: project(table[ids])


def contextual_table(teacher, table: np.ndarray, batch_size: int = 512, cache_dir: Optional[Path] = None) -> np.ndarray:
    """Every teacher WordPiece as the teacher reads it alone (``[CLS] piece [SEP]``): the mean of its last
    layer over the three positions, centred and scaled to the spread of the input ``table``.

    The idea of Model2Vec's static vectors (MinishLab, 2024): unlike an input row, such a vector carries what
    the teacher's layers make of the piece, here a teacher fine-tuned on the bot's intents. With ``cache_dir``
    the rows are kept there under the teacher's fingerprint, so a resumed run or another worker reads them
    instead of running the teacher over every WordPiece again (about 30 s on 2 cores)."""
    import tensorflow as tf

    fingerprint = getattr(teacher, "fingerprint", "")
    cached = Path(cache_dir) / f"contextual-rows-{fingerprint}.npy" if cache_dir is not None and fingerprint else None
    if cached is not None and cached.is_file():
        rows = np.load(cached)
        if rows.shape == table.shape and rows.dtype == table.dtype:
            logger.info("student embeddings: reusing the teacher's contextual rows in %s", cached)
            return rows
        logger.warning("%s holds rows of shape %s, not %s: computing them again", cached, rows.shape, table.shape)
    logger.info("student embeddings: the teacher reads each of its %d WordPieces alone", len(table))
    tokenizer = teacher.tokenizer
    rows = np.empty_like(table)
    for start in range(0, len(table), batch_size):
        pieces = np.arange(start, min(len(table), start + batch_size), dtype=np.int32)
        ids = np.stack([np.full_like(pieces, tokenizer.cls_token_id), pieces, np.full_like(pieces, tokenizer.sep_token_id)], axis=1)
        hidden = teacher.model.bert(input_ids=tf.constant(ids), attention_mask=tf.ones_like(ids), training=False)[0]
        rows[pieces] = hidden.numpy().mean(axis=1)
    rows -= rows.mean(axis=0, keepdims=True)
    rows *= table.std() / max(float(rows.std()), 1e-8)
    if cached is not None:
        cached.parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(cached, "wb") as handle:  # whole or absent: another worker may read it at any time
            np.save(handle, rows)
    return rows


def _check_copyable(settings, teacher_config) -> None:
    for key, teacher_value in (("hidden_size", teacher_config.hidden_size), ("intermediate_size", teacher_config.intermediate_size),
                               ("heads", teacher_config.num_attention_heads)):
        if getattr(settings, key) != teacher_value:
            raise ConfigError(
                f"'student.tinybert.init: teacher' copies teacher layers, so 'student.tinybert.{key}' must be the "
                f"teacher's {teacher_value}, got {getattr(settings, key)}; use init: random for other sizes"
            )
    chosen = settings.teacher_layers
    if chosen is not None:
        if len(chosen) != settings.layers:
            raise ConfigError(f"'student.tinybert.teacher_layers' names {len(chosen)} layers but 'layers' is {settings.layers}")
        if max(chosen) >= teacher_config.num_hidden_layers:
            raise ConfigError(f"'student.tinybert.teacher_layers' {chosen}: the teacher has layers 0-{teacher_config.num_hidden_layers - 1}")


def default_teacher_layers(student_layers: int, teacher_layers: int) -> List[int]:
    """Evenly spaced teacher layers ending with the last: 3 of 6 -> [1, 3, 5] (TinyBERT's mapping)."""
    step = teacher_layers / student_layers
    return [int(round(step * (i + 1))) - 1 for i in range(student_layers)]


def copy_teacher_layers(model, teacher, vocab, settings) -> None:
    teacher_bert = teacher.model.bert
    chosen = settings.teacher_layers or default_teacher_layers(settings.layers, teacher.model.config.num_hidden_layers)
    embeddings = model.bert.embeddings
    embeddings.weight.assign(teacher_bert.embeddings.weight.numpy()[vocab.teacher_ids])
    embeddings.token_type_embeddings.assign(teacher_bert.embeddings.token_type_embeddings.numpy())
    positions = teacher_bert.embeddings.position_embeddings.numpy()
    embeddings.position_embeddings.assign(positions[: embeddings.position_embeddings.shape[0]])
    embeddings.LayerNorm.set_weights(teacher_bert.embeddings.LayerNorm.get_weights())
    for student_index, teacher_index in enumerate(chosen):
        model.bert.encoder.layer[student_index].set_weights(teacher_bert.encoder.layer[teacher_index].get_weights())
    model.bert.pooler.set_weights(teacher_bert.pooler.get_weights())


def fit_projection(table: np.ndarray, size: int) -> Callable[[np.ndarray], np.ndarray]:
    """Rows -> ``size`` dimensions: the top principal components of ``table``, scaled so that ``table``'s
    projection has BERT's initial standard deviation (0.02)."""
    mean = table.mean(axis=0, keepdims=True)
    _, _, components = np.linalg.svd(table - mean, full_matrices=False)
    width = min(size, components.shape[0])

    def raw(rows: np.ndarray) -> np.ndarray:
        projected = np.zeros((rows.shape[0], size), dtype=np.float32)
        projected[:, :width] = (rows - mean) @ components[:width].T
        return projected

    scale = 0.02 / max(float(raw(table).std()), 1e-8)
    return lambda rows: (raw(rows) * scale).astype(np.float32)


def extended_network(kind: str, network, architecture: Dict[str, Any], labels: Sequence[str], extra_rows: np.ndarray):
    """A copy of ``network`` whose word embeddings have ``extra_rows`` appended (the vocabulary extension)."""
    if kind == "bilstm":
        settings = bilstm_settings(architecture)
        size = network.get_layer("embedding").input_dim + len(extra_rows)
        static = np.zeros((size, architecture["embedding_dim"]), dtype=np.float32) if settings.multichannel else None
        bigger = build_bilstm(settings, size, len(labels), static, architecture["embedding_dim"])
    else:
        from transformers import TFBertForSequenceClassification

        config = network.config.__class__.from_dict({**network.config.to_dict(), "vocab_size": network.config.vocab_size + len(extra_rows)})
        bigger = TFBertForSequenceClassification(config)
        bigger(bigger.dummy_inputs, training=False)
    # The embedding tables are the weights whose shapes differ; the rest is copied as it is.
    weights = [np.concatenate([old, extra_rows]) if old.shape != new.shape else old
               for old, new in zip(network.get_weights(), bigger.get_weights())]
    bigger.set_weights(weights)
    return bigger


def bilstm_settings(architecture: Dict[str, Any]):
    """The BiLSTM's settings from a saved architecture record (defaults for keys older records lack)."""
    from rasa_kd.models.architectures import BiLSTMSettings

    # Records written before these adapted to the data's size hold them; older ones had these values.
    older = {"hidden_units": 300, "embeddings": "teacher", "train_embeddings": True}
    return BiLSTMSettings(**{f.name: architecture.get(f.name, older.get(f.name, f.default)) for f in dataclasses.fields(BiLSTMSettings)})


def student_forward(kind: str, network):
    """A traced ``(ids, mask) -> logits`` for inference (eager Keras calls cost tens of ms)."""
    import tensorflow as tf

    spec = tf.TensorSpec([None, None], tf.int32)
    if kind == "bilstm":

        @tf.function(input_signature=[spec, spec])
        def forward(input_ids, attention_mask):
            return network(input_ids, training=False)

    else:

        @tf.function(input_signature=[spec, spec])
        def forward(input_ids, attention_mask):
            return network(input_ids=input_ids, attention_mask=attention_mask, training=False).logits

    return forward

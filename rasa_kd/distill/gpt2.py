"""GPT-2 generation of transfer sentences (Tang & Lin 2019): fine-tune a language model on the
training sentences, then sample new ones. The model loads from a local folder only."""
import logging
from pathlib import Path
from typing import List, Sequence

import numpy as np

from rasa_kd.distill.training import Trainer
from rasa_kd.errors import ConfigError, ModelLoadError

logger = logging.getLogger(__name__)


def load_gpt2(model: str):
    """A TF GPT-2 LM and its tokenizer from a local folder (tf_model.h5 or PyTorch safetensors)."""
    from transformers import AutoConfig, AutoTokenizer, TFAutoModelForCausalLM

    from rasa_kd.models import bert

    if model is None:
        raise ConfigError(
            "'transfer_set.gpt2.model' must name a local GPT-2 folder: no GPT-2 weights ship with rasa-kd "
            "and nothing can be downloaded here"
        )
    folder = Path(model).expanduser()
    if not (folder / "config.json").is_file():
        raise ModelLoadError(f"GPT-2 folder {folder} has no config.json (set 'transfer_set.gpt2.model' to a local folder)")
    tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    config = AutoConfig.from_pretrained(str(folder), local_files_only=True)
    with bert._quiet_transformers():
        if (folder / bert.TF_WEIGHTS).is_file():
            lm = TFAutoModelForCausalLM.from_pretrained(str(folder), local_files_only=True)
        elif (folder / bert.SAFETENSORS_WEIGHTS).is_file():
            lm = bert.from_pytorch_safetensors(folder / bert.SAFETENSORS_WEIGHTS, config, TFAutoModelForCausalLM)
        else:
            raise ModelLoadError(f"GPT-2 folder {folder} has neither {bert.TF_WEIGHTS} nor {bert.SAFETENSORS_WEIGHTS}")
    if tokenizer.eos_token_id is None:
        raise ModelLoadError(f"the tokenizer in {folder} has no end-of-text token")
    return lm, tokenizer


class GPT2Trainer(Trainer):
    """The language model's step: next-token cross-entropy on ``<eos> sentence <eos>``, no loss on padding."""

    description = "fine-tuning GPT-2"

    def __init__(self, lm, sequences: List[List[int]], eos: int, settings, seed: int, progress: bool):
        import tensorflow as tf

        super().__init__([len(s) for s in sequences], settings.epochs, settings.batch_size, seed, progress=progress,
                         log_level=logging.DEBUG)
        self.sequences, self.eos = sequences, eos
        optimizer = tf.keras.optimizers.Adam(learning_rate=settings.learning_rate)
        spec = tf.TensorSpec([None, None], tf.int32)

        @tf.function(input_signature=[spec, spec, spec])
        def step(input_ids, attention_mask, labels):
            with tf.GradientTape() as tape:
                loss = tf.reduce_mean(lm(input_ids=input_ids, attention_mask=attention_mask, labels=labels, training=True).loss)
            gradients = tape.gradient(loss, lm.trainable_variables)
            optimizer.apply_gradients(zip(gradients, lm.trainable_variables))
            return loss

        self._step = step

    def train_step(self, batch: np.ndarray) -> float:
        width = max(self.lengths[i] for i in batch)
        ids = np.full((len(batch), width), self.eos, dtype=np.int32)
        mask = np.zeros_like(ids)
        labels = np.full_like(ids, -100)  # -100: no loss on padding
        for row, i in enumerate(batch):
            ids[row, : self.lengths[i]] = self.sequences[i]
            mask[row, : self.lengths[i]] = 1
            labels[row, : self.lengths[i]] = self.sequences[i]
        return float(self._step(ids, mask, labels))


def fine_tune_gpt2(lm, tokenizer, sentences: Sequence[str], settings, seed: int, progress: bool = True) -> List[float]:
    """Train the LM on ``<eos> sentence <eos>`` sequences; return the mean loss of each epoch."""
    eos = tokenizer.eos_token_id
    sequences = [[eos] + tokenizer.encode(s)[: settings.max_length - 2] + [eos] for s in sentences]
    record = GPT2Trainer(lm, sequences, eos, settings, seed, progress).fit()
    return [epoch.loss for epoch in record.epochs]


def sample_sentences(lm, tokenizer, count: int, settings, seed: int) -> List[str]:
    """``count`` sampled sentences (some may be empty; the caller filters and deduplicates)."""
    import tensorflow as tf

    tf.random.set_seed(seed)
    eos = tokenizer.eos_token_id
    out: List[str] = []
    while len(out) < count:
        batch = min(settings.sample_batch_size, count - len(out))
        prompt = tf.fill([batch, 1], eos)
        generated = lm.generate(
            input_ids=prompt,
            attention_mask=tf.ones_like(prompt),
            do_sample=True,
            max_new_tokens=settings.max_length,
            top_k=settings.top_k,
            top_p=settings.top_p,
            temperature=settings.temperature,
            pad_token_id=eos,
            eos_token_id=eos,
        ).numpy()
        for row in generated:
            tokens = list(row[1:])
            if eos in tokens:
                tokens = tokens[: tokens.index(eos)]
            out.append(" ".join(tokenizer.decode(tokens, skip_special_tokens=True).split()))
    return out

"""Tiny BERT models and intent data built locally, so tests take seconds and download nothing."""
from pathlib import Path
from typing import Dict, List, Tuple

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]

# Three intents with their own words, so a 2-layer model learns them in a few epochs.
INTENT_EXAMPLES: Dict[str, List[str]] = {
    "greet": [
        "hello", "hi there", "hello friend", "hey", "hi", "good morning", "hello there bot",
        "hey there", "good evening", "hi friend", "morning", "hey bot",
    ],
    "goodbye": [
        "bye", "goodbye", "see you later", "bye bye", "see you", "good night", "farewell",
        "later bot", "bye friend", "goodbye bot", "see you soon", "night night",
    ],
    "order_pizza": [
        "i want a pizza", "order a pizza", "pizza please", "can i get a pizza", "i would like pizza",
        "one pizza with cheese", "order pizza now", "get me a pizza", "a large pizza", "pizza with ham",
        "two pizzas please", "i want to order pizza",
    ],
}

EXTRA_WORDS = (
    "the a to me with and of is what how can you do it now please not that this".split()
)


def intent_pairs() -> Tuple[List[str], List[str]]:
    """(texts, intents) of :data:`INTENT_EXAMPLES`."""
    texts, intents = [], []
    for intent, examples in INTENT_EXAMPLES.items():
        texts.extend(examples)
        intents.extend([intent] * len(examples))
    return texts, intents


def vocabulary() -> List[str]:
    words = {w for examples in INTENT_EXAMPLES.values() for text in examples for w in text.split()}
    words.update(EXTRA_WORDS)
    return SPECIAL_TOKENS + sorted(words) + ["##s", "##ing", "##er"]


def write_tiny_bert(folder: Path, hidden_size: int = 32, layers: int = 2, seed: int = 0) -> Path:
    """Write a random 2-layer BERT (tf_model.h5, config.json, tokenizer) to ``folder``."""
    import tensorflow as tf
    from transformers import BertConfig, BertTokenizerFast, TFBertModel

    folder.mkdir(parents=True, exist_ok=True)
    vocab_file = folder / "vocab.txt"
    vocab_file.write_text("\n".join(vocabulary()) + "\n", encoding="utf-8")
    tokenizer = BertTokenizerFast(vocab_file=str(vocab_file), do_lower_case=True)
    tokenizer.save_pretrained(str(folder))
    config = BertConfig(
        vocab_size=len(vocabulary()),
        hidden_size=hidden_size,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=hidden_size * 2,
        max_position_embeddings=128,
    )
    tf.keras.utils.set_random_seed(seed)
    model = TFBertModel(config)
    model(model.dummy_inputs)
    model.save_pretrained(str(folder))
    return folder


def write_nlu_file(path: Path, examples: Dict[str, List[str]] = INTENT_EXAMPLES) -> Path:
    """A Rasa NLU YAML file of ``examples``."""
    from rasa_kd.data.nlu_yaml import dump_nlu_yaml

    path.parent.mkdir(parents=True, exist_ok=True)
    dump_nlu_yaml(path, examples)
    return path


# Held-out sentences for dev and test: new word orders of the same vocabulary.
DEV_EXAMPLES: Dict[str, List[str]] = {
    "greet": ["hello hello", "hi bot", "good morning friend"],
    "goodbye": ["bye bot", "see you friend", "good night bot"],
    "order_pizza": ["pizza now please", "i want pizza", "order one pizza"],
}
TEST_EXAMPLES: Dict[str, List[str]] = {
    "greet": ["hey friend", "hello there", "hi hi"],
    "goodbye": ["bye now", "later friend", "goodbye friend"],
    "order_pizza": ["a pizza please", "get pizza", "i would like a pizza please"],
}


def write_splits(folder: Path) -> Dict[str, Path]:
    """train.yml / dev.yml / test.yml of the tiny intent data."""
    return {
        "train": write_nlu_file(folder / "train.yml", INTENT_EXAMPLES),
        "dev": write_nlu_file(folder / "dev.yml", DEV_EXAMPLES),
        "test": write_nlu_file(folder / "test.yml", TEST_EXAMPLES),
    }


def write_tiny_gpt2(folder: Path, seed: int = 0) -> Path:
    """A random 2-layer GPT-2 with a byte-level tokenizer of 256 symbols and no merges."""
    import json

    import tensorflow as tf
    from transformers import GPT2Config, GPT2TokenizerFast, TFGPT2LMHeadModel
    from transformers.models.gpt2.tokenization_gpt2 import bytes_to_unicode

    folder.mkdir(parents=True, exist_ok=True)
    symbols = list(bytes_to_unicode().values())
    vocab = {symbol: i for i, symbol in enumerate(symbols)}
    vocab["<|endoftext|>"] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
    tokenizer = GPT2TokenizerFast(vocab_file=str(folder / "vocab.json"), merges_file=str(folder / "merges.txt"))
    tokenizer.save_pretrained(str(folder))
    config = GPT2Config(vocab_size=len(vocab), n_positions=64, n_embd=32, n_layer=2, n_head=2,
                        bos_token_id=len(vocab) - 1, eos_token_id=len(vocab) - 1)
    tf.keras.utils.set_random_seed(seed)
    model = TFGPT2LMHeadModel(config)
    model(model.dummy_inputs)
    model.save_pretrained(str(folder))
    return folder


# Settings that make a whole distillation of the tiny data take seconds.
TINY_DISTILL = {
    "teacher.epochs": 25, "teacher.batch_size": 8, "teacher.learning_rate": 2e-3, "teacher.max_seq_length": 16,
    "teacher.train_embeddings": True,
    "transfer_set.size": 400, "labelling.shard_size": 64, "labelling.batch_size": 32,
    "student.bilstm.hidden_units": 16, "student.bilstm.dense_units": 16, "student.bilstm.max_seq_length": 16,
    "student.tinybert.layers": 2, "student.tinybert.hidden_size": 16, "student.tinybert.heads": 2,
    "student.tinybert.intermediate_size": 32, "student.tinybert.max_seq_length": 16,
    "student.training.epochs": 12, "student.training.batch_size": 16, "student.training.learning_rate": 5e-3,
    "evaluation.latency_sentences": 10, "evaluation.latency_batches": 1,
}


def tiny_distill_config(data: Dict[str, Path], bert_dir: Path, **extra):
    from rasa_kd.distill.config import load_config

    return load_config(None, {**TINY_DISTILL, "data.train": str(data["train"]), "data.dev": str(data["dev"]),
                              "data.test": str(data["test"]), "teacher.model": str(bert_dir), **extra})

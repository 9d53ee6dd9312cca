"""Convert a data set to Rasa YAML NLU files plus a ``dataset.json`` record of what was done."""
import datetime
import logging
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional

from rasa_kd import __version__
from rasa_kd.data.formats import READERS, SPLITS, Example, RawDataset, Skipped
from rasa_kd.data.nlu_yaml import dump_nlu_yaml
from rasa_kd.errors import DataError, RasaKDError
from rasa_kd.io_utils import atomic_directory, sha256_file, write_json
from rasa_kd.data.labels import label_to_intent

logger = logging.getLogger(__name__)

LABEL_RULE = (
    "letters, digits and _ - . : are kept; any other character c becomes ~xx, ~uxxxx or ~Uxxxxxxxx "
    "(lower-case hex of ord(c)); rasa_kd.data.labels.intent_to_label reverses it"
)


def normalize_text(text: str) -> str:
    """Strip and collapse whitespace runs (newlines, tabs, U+2028 ...) to one space.

    Rasa's YAML format holds one example per line, so a line break inside a text would split it.
    """
    return " ".join(text.split())


def _entity_markup(text: str) -> bool:
    from rasa.shared.nlu.training_data.entities_parser import ENTITY_REGEX

    return ENTITY_REGEX.search(text) is not None


def _clean_split(split: str, examples: List[Example], keep: str, skipped: List[Skipped]) -> Dict[str, Any]:
    """Normalise, filter and deduplicate one split; return its examples by intent and its counts."""
    by_intent: Dict[str, List[str]] = defaultdict(list)
    first_seen: Dict[tuple, Example] = {}
    intents_of_text: Dict[str, set] = defaultdict(set)
    normalized = 0
    for example in examples:
        text = normalize_text(example.text)
        normalized += text != example.text.strip()
        if not text:
            skipped.append(Skipped(example.file, example.line, "empty text", example.text, split))
            continue
        if _entity_markup(text):
            # Rasa would read "[x](y)" as an entity and train on different text than the source has.
            skipped.append(Skipped(example.file, example.line, "text contains Rasa entity markup", text, split))
            continue
        intent = label_to_intent(example.label, keep)
        key = (text, intent)
        if key in first_seen:
            # Rasa's loader drops exact duplicates; list them here so the counts agree.
            original = first_seen[key]
            reason = f"duplicate of {original.file} line {original.line}"
            skipped.append(Skipped(example.file, example.line, reason, text, split))
            continue
        first_seen[key] = example
        intents_of_text[text].add(intent)
        by_intent[intent].append(text)
    ordered = {intent: by_intent[intent] for intent in sorted(by_intent)}
    return {
        "examples": ordered,
        "whitespace_normalized": normalized,
        "texts_with_conflicting_intents": sum(1 for s in intents_of_text.values() if len(s) > 1),
    }


def _hold_out_dev(train: Dict[str, Any], size: int, seed: int) -> Dict[str, Any]:
    """Move ``size`` random training examples (seeded) into a new dev split."""
    import numpy as np

    pairs = [(intent, text) for intent, texts in train["examples"].items() for text in texts]
    if not 0 < size < len(pairs):
        raise DataError(f"--dev-size must be between 1 and {len(pairs) - 1} (the training examples), got {size}")
    chosen = set(np.random.default_rng(seed).permutation(len(pairs))[:size].tolist())
    kept, moved = defaultdict(list), defaultdict(list)
    for index, (intent, text) in enumerate(pairs):
        (moved if index in chosen else kept)[intent].append(text)
    train["examples"] = {intent: kept[intent] for intent in sorted(kept)}
    return {"examples": {intent: moved[intent] for intent in sorted(moved)}, "whitespace_normalized": 0,
            "texts_with_conflicting_intents": 0}


def sample_per_intent(examples: Dict[str, List[str]], per_intent: int, seed: int,
                      held_out: Iterable[str] = ()) -> Dict[str, List[str]]:
    """At most ``per_intent`` examples of each intent, drawn with ``seed``: a few-shot version of ``examples``.

    A text that also occurs in ``held_out`` (dev or test; case and whitespace do not count) is never
    drawn. The draw does not depend on the order of the examples, and for one seed a smaller
    ``per_intent`` gives a subset of a larger one's examples.
    """
    import numpy as np

    if per_intent < 1:
        raise DataError(f"--per-intent must be at least 1, got {per_intent}")
    excluded = {" ".join(t.lower().split()) for t in held_out}
    sampled = {}
    for number, intent in enumerate(sorted(examples)):
        pool = sorted({t for t in examples[intent] if " ".join(t.lower().split()) not in excluded})
        order = np.random.default_rng([seed, number]).permutation(len(pool))
        sampled[intent] = [pool[i] for i in sorted(order[:per_intent])]
    return {intent: texts for intent, texts in sampled.items() if texts}


def convert_dataset(
    fmt: str,
    source: Path,
    output: Path,
    overwrite: bool = False,
    dev_size: Optional[int] = None,
    seed: int = 0,
    per_intent: Optional[int] = None,
    **reader_options: Any,
) -> Dict[str, Any]:
    """Convert ``source`` in format ``fmt`` into ``output``; return the ``dataset.json`` record.

    ``dev_size`` holds out that many random training examples (``seed``) as dev, for data sets
    without a dev split (TREC). ``per_intent`` makes a few-shot version: at most that many training
    examples per intent (``seed``), none that occurs in dev or test, and no dev split (a small bot has
    none); the test split is kept whole.
    """
    if fmt not in READERS:
        raise DataError(f"unknown format {fmt!r}; choose one of: {', '.join(READERS)}")
    source, output = Path(source), Path(output)
    if not source.exists():
        raise DataError(f"{fmt}: SOURCE {source} does not exist")
    if output.exists() and any(output.iterdir()) and not overwrite:
        raise RasaKDError(f"output folder {output} exists and is not empty; pass --force to replace it")

    raw: RawDataset = READERS[fmt](source, **reader_options)
    skipped = list(raw.skipped)
    splits: Dict[str, Dict[str, Any]] = {}
    for split in SPLITS:
        if split in raw.splits:
            splits[split] = _clean_split(split, raw.splits[split], raw.keep_in_intents, skipped)
    moved_to_dev = 0
    if dev_size is not None:
        if "dev" in splits:
            raise DataError(f"{fmt} has a dev split of its own; --dev-size is for data sets without one")
        splits["dev"] = _hold_out_dev(splits["train"], dev_size, seed)
        splits = {split: splits[split] for split in SPLITS if split in splits}
        moved_to_dev = dev_size
    few_shot = None
    if per_intent is not None:
        held_out = [t for split in ("dev", "test") if split in splits for texts in splits[split]["examples"].values() for t in texts]
        full = sum(len(v) for v in splits["train"]["examples"].values())
        splits["train"]["examples"] = sample_per_intent(splits["train"]["examples"], per_intent, seed, held_out)
        few_shot = {"per_intent": per_intent, "seed": seed, "train_examples_before": full, "dev_dropped": "dev" in splits}
        splits.pop("dev", None)
    file_order = {name: i for i, name in enumerate(raw.files)}
    skipped.sort(key=lambda s: (file_order.get(s.file, len(file_order)), s.line))
    if not any(splits.get("train", {}).get("examples", {}).values()):
        raise DataError(f"{fmt}: no training examples could be read from {source}")

    labels = {}
    for part in raw.splits.values():
        for example in part:
            labels.setdefault(label_to_intent(example.label, raw.keep_in_intents), example.label)
    record = {
        "format": fmt,
        "source": str(source.resolve()),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "rasa_kd_version": __version__,
        "reader_options": {k: v for k, v in reader_options.items() if v is not None},
        "dev_from_train": {"examples": dev_size, "seed": seed} if dev_size is not None else None,
        "few_shot": few_shot,
        "source_files": [
            {"path": name, "split": raw.file_splits[name], "bytes": path.stat().st_size, "sha256": sha256_file(path)}
            for name, path in raw.files.items()
        ],
        "label_rule": LABEL_RULE,
        "intent_labels": {intent: labels[intent] for intent in sorted(labels)},
        "splits": {},
        "skipped_count": len(skipped),
        "skipped_reasons": dict(Counter(_reason_kind(s.reason) for s in skipped)),
        "skipped": [vars(s) for s in skipped],
        "notes": raw.notes,
    }
    with atomic_directory(output, overwrite=True) as tmp:
        for split, cleaned in splits.items():
            examples = cleaned["examples"]
            dump_nlu_yaml(tmp / f"{split}.yml", examples)
            record["splits"][split] = {
                "file": f"{split}.yml",
                "rows": raw.rows.get(split, 0) if split != "dev" or not moved_to_dev else moved_to_dev,
                "moved_to_dev": moved_to_dev if split == "train" else 0,
                "examples": sum(len(v) for v in examples.values()),
                "skipped": sum(1 for s in skipped if s.split == split),
                "whitespace_normalized": cleaned["whitespace_normalized"],
                "texts_with_conflicting_intents": cleaned["texts_with_conflicting_intents"],
                "intents": {intent: len(texts) for intent, texts in examples.items()},
            }
        write_json(tmp / "dataset.json", record)
    for split, info in record["splits"].items():
        logger.info("%s: %d examples, %d intents, %d skipped", split, info["examples"], len(info["intents"]), info["skipped"])
    return record


def _reason_kind(reason: str) -> str:
    return "duplicate" if reason.startswith("duplicate of") else reason.split(":")[0]

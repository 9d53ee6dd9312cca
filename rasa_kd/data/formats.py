"""Readers that turn public data sets into labelled examples, each traced to its file and line.

A reader returns every row it saw: as an :class:`Example`, or as a :class:`Skipped` row with the
reason. Readers do not clean or deduplicate; :mod:`rasa_kd.data.convert` does that for all formats
in one place.
"""
import csv
import io
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

from rasa_kd.errors import DataError

logger = logging.getLogger(__name__)

SPLITS = ("train", "dev", "test")


@dataclass
class Example:
    """One labelled sentence as read from its source."""

    text: str
    label: str
    file: str
    line: int


@dataclass
class Skipped:
    """A source row that did not become an example, and why."""

    file: str
    line: int
    reason: str
    text: Optional[str] = None
    split: Optional[str] = None


@dataclass
class RawDataset:
    """What a reader found: examples per split, skipped rows, files read, and notes for the record."""

    format: str
    splits: Dict[str, List[Example]] = field(default_factory=dict)
    skipped: List[Skipped] = field(default_factory=list)
    files: Dict[str, Path] = field(default_factory=dict)  # relative name -> path, in reading order
    file_splits: Dict[str, str] = field(default_factory=dict)  # relative name -> split
    rows: Dict[str, int] = field(default_factory=dict)  # split -> rows read
    notes: List[str] = field(default_factory=list)
    # Characters besides the default ones that the label->intent rule keeps (Rasa's "/" for `rasa`).
    keep_in_intents: str = ""

    def add_file(self, split: str, path: Path, root: Path) -> str:
        """Record a source file read for ``split`` (or ``"labels"``); return its name for messages."""
        try:
            name = path.relative_to(root).as_posix()
        except ValueError:
            name = str(path)
        self.files[name] = path
        self.file_splits[name] = split
        if split in SPLITS:
            self.splits.setdefault(split, [])
            self.rows.setdefault(split, 0)
        return name

    def add(self, split: str, example: Example) -> None:
        self.splits[split].append(example)
        self.rows[split] += 1

    def skip(self, split: str, row: Skipped) -> None:
        row.split = split
        self.skipped.append(row)
        self.rows[split] += 1


def _require_file(folder: Path, name: str, fmt: str) -> Path:
    path = folder / name
    if not path.is_file():
        raise DataError(f"{fmt}: expected the file {path} (SOURCE must be the folder holding {name})")
    return path


def _require_folder(source: Path, fmt: str) -> None:
    if not source.is_dir():
        raise DataError(f"{fmt}: SOURCE must be a folder, got {source}")


def _read_lines(path: Path, dataset: RawDataset, name: str) -> Iterator[Tuple[int, str]]:
    """Yield (1-based line number, line without newline), decoding each line as UTF-8.

    A line that is not UTF-8 is decoded as latin-1 (every byte maps to one character) and noted,
    so a single stray byte (TREC's line 66) neither stops the conversion nor goes unreported.
    """
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            raw = raw.rstrip(b"\r\n")
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                line = raw.decode("latin-1")
                dataset.notes.append(f"{name} line {number} is not valid UTF-8; read it as latin-1")
            yield number, line


# --- CoLA ----------------------------------------------------------------------------------------

COLA_LABELS = {"1": "acceptable", "0": "unacceptable"}


def read_cola(source: Path, **_: object) -> RawDataset:
    """CoLA public release: train = in_domain_train; dev = in_domain_dev + out_of_domain_dev."""
    _require_folder(source, "cola")
    dataset = RawDataset("cola")
    files = [
        ("train", "in_domain_train.tsv"),
        ("dev", "in_domain_dev.tsv"),
        ("dev", "out_of_domain_dev.tsv"),
    ]
    for split, filename in files:
        path = _require_file(source, filename, "cola")
        name = dataset.add_file(split, path, source)
        for number, line in _read_lines(path, dataset, name):
            if not line.strip():
                continue
            parts = line.split("\t", 3)
            if len(parts) != 4:
                dataset.skip(split, Skipped(name, number, f"expected 4 tab-separated fields, found {len(parts)}", line))
            elif parts[1] not in COLA_LABELS:
                dataset.skip(split, Skipped(name, number, f"label {parts[1]!r} is not 0 or 1", parts[3]))
            else:
                dataset.add(split, Example(parts[3], COLA_LABELS[parts[1]], name, number))
    return dataset


# --- SST-2 ---------------------------------------------------------------------------------------

SST2_LABELS = {"1": "positive", "0": "negative"}


def read_sst2(source: Path, **_: object) -> RawDataset:
    """SST-2 as in GLUE: ``train.tsv`` and ``dev.tsv`` with a ``sentence<TAB>label`` header."""
    _require_folder(source, "sst2")
    dataset = RawDataset("sst2")
    for split, filename in (("train", "train.tsv"), ("dev", "dev.tsv")):
        path = _require_file(source, filename, "sst2")
        name = dataset.add_file(split, path, source)
        lines = _read_lines(path, dataset, name)
        header = next(lines, (1, ""))[1].split("\t")
        if [h.strip() for h in header] != ["sentence", "label"]:
            raise DataError(f"{path}, line 1: expected the header 'sentence<TAB>label', found {header!r}")
        for number, line in lines:
            if not line.strip():
                continue
            text, sep, label = line.rpartition("\t")
            if not sep:
                dataset.skip(split, Skipped(name, number, "no tab between sentence and label", line))
            elif label.strip() not in SST2_LABELS:
                dataset.skip(split, Skipped(name, number, f"label {label!r} is not 0 or 1", text))
            else:
                dataset.add(split, Example(text, SST2_LABELS[label.strip()], name, number))
    for extra in sorted(source.glob("test*.tsv")):
        dataset.notes.append(f"{extra.name} was not converted: it has no labels")
    return dataset


def read_sst2_sentences(source: Path, **_: object) -> RawDataset:
    """SST-2 at sentence level (Kim 2014 splits): ``stsa.binary.{train,dev,test}``, ``<label> <text>``."""
    _require_folder(source, "sst2-sentences")
    dataset = RawDataset("sst2-sentences")
    for split in SPLITS:
        path = _require_file(source, f"stsa.binary.{split}", "sst2-sentences")
        name = dataset.add_file(split, path, source)
        for number, line in _read_lines(path, dataset, name):
            if not line.strip():
                continue
            label, _, text = line.partition(" ")
            if label not in SST2_LABELS:
                dataset.skip(split, Skipped(name, number, f"label {label!r} is not 0 or 1", line))
            else:
                dataset.add(split, Example(text, SST2_LABELS[label], name, number))
    return dataset


# --- TREC ----------------------------------------------------------------------------------------


def _read_trec(source: Path, fine: bool) -> RawDataset:
    fmt = "trec-fine" if fine else "trec"
    _require_folder(source, fmt)
    dataset = RawDataset(fmt)
    for split, filename in (("train", "train_5500.label"), ("test", "TREC_10.label")):
        path = _require_file(source, filename, fmt)
        name = dataset.add_file(split, path, source)
        for number, line in _read_lines(path, dataset, name):
            if not line.strip():
                continue
            label, _, text = line.partition(" ")
            coarse, colon, fine_label = label.partition(":")
            if not colon or not coarse or not fine_label:
                dataset.skip(split, Skipped(name, number, f"label {label!r} is not COARSE:fine", line))
            else:
                dataset.add(split, Example(text, label if fine else coarse, name, number))
    return dataset


def read_trec(source: Path, **_: object) -> RawDataset:
    """TREC question classification, the 6 coarse classes (``DESC``, ``ENTY``, ...)."""
    return _read_trec(source, fine=False)


def read_trec_fine(source: Path, **_: object) -> RawDataset:
    """TREC question classification, the 50 fine classes (``DESC:manner``, ...)."""
    return _read_trec(source, fine=True)


# --- Sara (thesis TSV) ---------------------------------------------------------------------------


def read_sara(source: Path, **_: object) -> RawDataset:
    """The 2020 thesis's Sara TSVs: ``intent_id<TAB>text``, ids named in ``int_to_intent.tsv``."""
    _require_folder(source, "sara")
    dataset = RawDataset("sara")
    mapping_path = _require_file(source, "int_to_intent.tsv", "sara")
    mapping_name = dataset.add_file("labels", mapping_path, source)
    id_to_intent: Dict[str, str] = {}
    for number, line in _read_lines(mapping_path, dataset, mapping_name):
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) != 2 or not parts[0].strip() or not parts[1].strip():
            raise DataError(f"{mapping_path}, line {number}: expected 'id<TAB>intent', found {line!r}")
        id_to_intent[parts[0].strip()] = parts[1].strip()
    for split in SPLITS:
        path = source / f"{split}.tsv"
        if not path.is_file():
            if split == "train":
                raise DataError(f"sara: expected the file {path}")
            continue
        name = dataset.add_file(split, path, source)
        for number, line in _read_lines(path, dataset, name):
            if not line.strip():
                continue
            intent_id, sep, text = line.partition("\t")
            if not sep:
                dataset.skip(split, Skipped(name, number, "no tab between intent id and text", line))
            elif intent_id.strip() not in id_to_intent:
                dataset.skip(split, Skipped(name, number, f"intent id {intent_id!r} is not in {mapping_name}", text))
            else:
                dataset.add(split, Example(text, id_to_intent[intent_id.strip()], name, number))
    return dataset


# --- SNIPS ---------------------------------------------------------------------------------------


def read_snips(source: Path, **_: object) -> RawDataset:
    """SNIPS (Goo et al. 2018 split): ``{train,valid,test}/seq.in`` with ``label`` line by line."""
    _require_folder(source, "snips")
    dataset = RawDataset("snips")
    for split, folder in (("train", "train"), ("dev", "valid"), ("test", "test")):
        if not (source / folder).is_dir():
            if split == "train":
                raise DataError(f"snips: expected the folder {source / folder} with seq.in and label")
            continue
        texts_path = _require_file(source / folder, "seq.in", "snips")
        labels_path = _require_file(source / folder, "label", "snips")
        texts_name = dataset.add_file(split, texts_path, source)
        labels_name = dataset.add_file(split, labels_path, source)
        texts = list(_read_lines(texts_path, dataset, texts_name))
        labels = list(_read_lines(labels_path, dataset, labels_name))
        if len(texts) != len(labels):
            raise DataError(
                f"snips: {texts_path} has {len(texts)} lines but {labels_path} has {len(labels)}; "
                "they must pair line by line"
            )
        for (number, text), (_, label) in zip(texts, labels):
            if not label.strip():
                dataset.skip(split, Skipped(texts_name, number, f"empty label in {labels_name}", text))
            else:
                dataset.add(split, Example(text, label.strip(), texts_name, number))
    return dataset


# --- CSV / TSV -----------------------------------------------------------------------------------

CSV_SPLIT_NAMES = {"train": ("train",), "dev": ("dev", "valid", "validation"), "test": ("test",)}


def _find_split_file(source: Path, names: Sequence[str]) -> Optional[Path]:
    found = [source / f"{n}{ext}" for n in names for ext in (".csv", ".tsv") if (source / f"{n}{ext}").is_file()]
    if len(found) > 1:
        raise DataError(f"csv: found {', '.join(str(p) for p in found)}; keep one file per split")
    return found[0] if found else None


def read_csv(source: Path, text_column: str = "text", label_column: str = "label", **_: object) -> RawDataset:
    """A folder of ``train``/``dev`` (or ``valid``/``validation``)/``test`` files, ``.csv`` or ``.tsv``,
    each with a header row naming the text and label columns."""
    _require_folder(source, "csv")
    dataset = RawDataset("csv")
    for split, names in CSV_SPLIT_NAMES.items():
        path = _find_split_file(source, names)
        if path is None:
            if split == "train":
                raise DataError(f"csv: no train.csv or train.tsv in {source}")
            continue
        name = dataset.add_file(split, path, source)
        delimiter = "\t" if path.suffix == ".tsv" else ","
        try:
            content = path.read_text(encoding="utf-8-sig")
        except UnicodeDecodeError as error:
            raise DataError(f"{path}: not UTF-8 ({error}); re-save the file as UTF-8") from error
        reader = csv.reader(io.StringIO(content, newline=""), delimiter=delimiter)
        header = next(reader, None)
        if header is None:
            raise DataError(f"{path}: the file is empty; expected a header row")
        for column in (text_column, label_column):
            if column not in header:
                raise DataError(
                    f"{path}, line 1: no column {column!r} in the header {header}; "
                    "choose columns with --text-column and --label-column"
                )
        text_at, label_at = header.index(text_column), header.index(label_column)
        start = reader.line_num + 1
        for row in reader:
            number, start = start, reader.line_num + 1
            if not row or not any(cell.strip() for cell in row):
                continue
            if len(row) != len(header):
                dataset.skip(split, Skipped(name, number, f"{len(row)} fields where the header has {len(header)}", delimiter.join(row)))
            elif not row[label_at].strip():
                dataset.skip(split, Skipped(name, number, f"empty {label_column!r}", row[text_at]))
            else:
                dataset.add(split, Example(row[text_at], row[label_at].strip(), name, number))
    return dataset


# --- Rasa YAML -----------------------------------------------------------------------------------


def _rasa_nlu_files(source: Path) -> Dict[str, List[Path]]:
    """Map splits to the YAML files holding NLU data.

    A Rasa project folder (one with ``data/``) gives train from ``data/`` and test from ``tests/``;
    any other folder or file is all train.
    """
    if source.is_file():
        return {"train": [source]}
    if not source.is_dir():
        raise DataError(f"rasa: SOURCE {source} is neither a file nor a folder")
    roots = {"train": source / "data", "test": source / "tests"} if (source / "data").is_dir() else {"train": source}
    found = {}
    for split, root in roots.items():
        files = sorted(p for p in root.rglob("*") if p.suffix in (".yml", ".yaml") and p.is_file())
        if files:
            found[split] = files
    if "train" not in found:
        raise DataError(f"rasa: no .yml or .yaml file under {roots['train']}")
    return found


def _load_yaml_with_lines(path: Path):
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    try:
        return YAML(typ="rt").load(path.read_text(encoding="utf-8"))
    except YAMLError as error:
        raise DataError(f"{path}: not valid YAML: {error}") from error
    except UnicodeDecodeError as error:
        raise DataError(f"{path}: not UTF-8 ({error})") from error


def _rasa_examples(item, examples_line: int) -> Iterator[Tuple[int, Optional[str], str]]:
    """Yield (line, text or None, problem) for each example of an intent block, as Rasa parses them."""
    from rasa.shared.nlu.training_data.formats.rasa_yaml import STRIP_SYMBOLS

    examples = item.get("examples", "")
    if isinstance(examples, str):
        # A literal block starts on the line after `examples: |`.
        for offset, raw in enumerate(examples.splitlines()):
            if not raw.strip():
                continue
            if not raw.startswith("-"):
                yield examples_line + 1 + offset, None, f"example does not start with '-' (Rasa skips it): {raw!r}"
            else:
                yield examples_line + 1 + offset, raw[1:].strip(STRIP_SYMBOLS), ""
    elif isinstance(examples, list):
        for index, entry in enumerate(examples):
            line = examples.lc.item(index)[0] + 1 if hasattr(examples, "lc") else examples_line
            if isinstance(entry, dict) and isinstance(entry.get("text"), str):
                yield line, entry["text"].strip(STRIP_SYMBOLS), ""
            else:
                yield line, None, f"example is not a mapping with a 'text' string: {entry!r}"
    else:
        yield examples_line, None, f"'examples' is neither a block of '- ' lines nor a list: {examples!r}"


def read_rasa(source: Path, **_: object) -> RawDataset:
    """Rasa 3 YAML NLU data: intents (retrieval intents ``group/sub`` kept whole), entity markup
    reduced to plain text; synonyms, regexes and lookups are counted but are not examples."""
    from rasa.shared.nlu.training_data.entities_parser import replace_entities

    dataset = RawDataset("rasa", keep_in_intents="/")
    root = source if source.is_dir() else source.parent
    other_items: Dict[str, int] = {"synonym": 0, "regex": 0, "lookup": 0}
    for split, files in _rasa_nlu_files(source).items():
        for path in files:
            document = _load_yaml_with_lines(path)
            if not isinstance(document, dict) or "nlu" not in document:
                dataset.notes.append(f"{path.relative_to(root).as_posix()} has no 'nlu' section; not read")
                continue
            name = dataset.add_file(split, path, root)
            items = document["nlu"] or []
            for index, item in enumerate(items):
                item_line = items.lc.item(index)[0] + 1
                if not isinstance(item, dict):
                    dataset.skip(split, Skipped(name, item_line, f"nlu item is not a mapping: {item!r}"))
                    continue
                kind = next((k for k in ("intent", "synonym", "regex", "lookup") if k in item), None)
                if kind != "intent":
                    if kind:
                        other_items[kind] += 1
                    else:
                        dataset.notes.append(f"{name} line {item_line}: nlu item with none of intent/synonym/regex/lookup")
                    continue
                intent = str(item.get("intent") or "").strip()
                examples_line = item.lc.key("examples")[0] + 1 if "examples" in item else item_line
                for line, text, problem in _rasa_examples(item, examples_line):
                    if not intent:
                        dataset.skip(split, Skipped(name, line, "the intent has an empty name", text))
                    elif text is None:
                        dataset.skip(split, Skipped(name, line, problem))
                    else:
                        dataset.add(split, Example(replace_entities(text), intent, name, line))
    dataset.notes.append(
        "not examples, so not converted: "
        + ", ".join(f"{count} {kind} item(s)" for kind, count in other_items.items())
    )
    return dataset


Reader = Callable[..., RawDataset]

READERS: Dict[str, Reader] = {
    "cola": read_cola,
    "sst2": read_sst2,
    "sst2-sentences": read_sst2_sentences,
    "trec": read_trec,
    "trec-fine": read_trec_fine,
    "sara": read_sara,
    "snips": read_snips,
    "rasa": read_rasa,
    "csv": read_csv,
}

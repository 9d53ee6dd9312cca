import json
from collections import Counter
from pathlib import Path

import pytest

from rasa_kd import cli
from rasa_kd.data.convert import convert_dataset
from rasa_kd.data.nlu_yaml import load_intent_examples
from rasa_kd.errors import DataError, RasaKDError
from rasa_kd.data.labels import intent_to_label, label_to_intent


def write(path: Path, content, encoding="utf-8") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding=encoding)
    return path


def rasa_counts(path: Path) -> Counter:
    """Examples per intent as Rasa's own loader reads the file."""
    return Counter(intent for _, intent in load_intent_examples(path))


def check_against_rasa(output: Path, record: dict) -> None:
    for split, info in record["splits"].items():
        assert rasa_counts(output / info["file"]) == Counter(info["intents"]), split
        assert info["rows"] == info["examples"] + info["skipped"] + info["moved_to_dev"], split


# --- the label rule ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "label, intent",
    [
        ("affirm", "affirm"),
        ("PlayMusic", "PlayMusic"),
        ("DESC:manner", "DESC:manner"),
        ("not sure", "not~20sure"),
        ("faq/ask", "faq~2fask"),
        ("a~b", "a~7eb"),
        ("x{y}@z", "x~7by~7d~40z"),
        ("café", "café"),
        ("smile 😀", "smile~20~U0001f600"),
        ("tab\tand\u2028", "tab~09and~u2028"),
    ],
)
def test_label_rule_is_readable_and_reversible(label, intent):
    assert label_to_intent(label) == intent
    assert intent_to_label(intent) == label


def test_retrieval_intents_keep_their_slash_when_asked():
    assert label_to_intent("faq/ask price", keep="/") == "faq/ask~20price"


# --- fixture files for each format ---------------------------------------------------------------


def test_cola(tmp_path):
    src = tmp_path / "cola"
    write(src / "in_domain_train.tsv", "gj04\t1\t\tThe cat sat.\ngj04\t0\t*\tCat the sat.\ngj04\t1\t\tThe cat sat.\nbroken line\n")
    write(src / "in_domain_dev.tsv", "gj04\t1\t\tA dog ran.\n")
    write(src / "out_of_domain_dev.tsv", "clc95\t0\t*\tRan dog a.")  # no final newline, as the original
    record = convert_dataset("cola", src, tmp_path / "out")
    assert record["splits"]["train"]["intents"] == {"acceptable": 1, "unacceptable": 1}
    assert record["splits"]["dev"]["intents"] == {"acceptable": 1, "unacceptable": 1}
    assert "test" not in record["splits"]
    reasons = {(s["file"], s["line"]): s["reason"] for s in record["skipped"]}
    assert reasons == {
        ("in_domain_train.tsv", 3): "duplicate of in_domain_train.tsv line 1",
        ("in_domain_train.tsv", 4): "expected 4 tab-separated fields, found 1",
    }
    check_against_rasa(tmp_path / "out", record)


def test_sst2_glue_strips_the_space_before_the_tab(tmp_path):
    src = tmp_path / "glue"
    write(src / "train.tsv", "sentence\tlabel\nhide new secretions \t0\nit 's charming \t1\nbad row\n")
    write(src / "dev.tsv", "sentence\tlabel\nunflinchingly bleak \t0\n")
    write(src / "test_unlabelled.tsv", "index\tsentence\n0\tanything\n")
    record = convert_dataset("sst2", src, tmp_path / "out")
    assert load_intent_examples(tmp_path / "out" / "train.yml") == [
        ("hide new secretions", "negative"),
        ("it 's charming", "positive"),
    ]
    assert record["skipped"][0]["line"] == 4 and "no tab" in record["skipped"][0]["reason"]
    assert any("test_unlabelled.tsv was not converted" in n for n in record["notes"])
    check_against_rasa(tmp_path / "out", record)


def test_sst2_sentences(tmp_path):
    src = tmp_path / "sl"
    for split in ("train", "dev", "test"):
        write(src / f"stsa.binary.{split}", f"1 a fine {split} film\n0 a dull {split} film\n2 odd label\n")
    record = convert_dataset("sst2-sentences", src, tmp_path / "out")
    assert set(record["splits"]) == {"train", "dev", "test"}
    assert all(info["examples"] == 2 and info["skipped"] == 1 for info in record["splits"].values())
    check_against_rasa(tmp_path / "out", record)


@pytest.mark.parametrize("fmt, intents", [("trec", {"HUM", "LOC", "NUM"}), ("trec-fine", {"HUM:ind", "LOC:city", "NUM:date"})])
def test_trec_reads_the_latin1_byte_and_says_so(tmp_path, fmt, intents):
    src = tmp_path / "trec"
    write(src / "train_5500.label", b"HUM:ind Who was the sister\xf0city founder ?\nLOC:city What city is it ?\nNOLABEL\n")
    write(src / "TREC_10.label", b"NUM:date When was it ?\n")
    record = convert_dataset(fmt, src, tmp_path / "out")
    assert set(record["intent_labels"]) == intents
    assert record["notes"] == ["train_5500.label line 1 is not valid UTF-8; read it as latin-1"]
    texts = [t for t, _ in load_intent_examples(tmp_path / "out" / "train.yml")]
    assert "Who was the sister\u00f0city founder ?" in texts
    assert record["skipped"][0]["line"] == 3
    check_against_rasa(tmp_path / "out", record)


def test_sara_thesis_tsv(tmp_path):
    src = tmp_path / "sara"
    write(src / "int_to_intent.tsv", "0\taffirm\n1\tgreet\n")
    write(src / "train.tsv", "0\tyes\n1\thello\n1\thello\n7\tunknown id\n")
    write(src / "dev.tsv", "0\tsure\n")
    write(src / "test.tsv", "1\thi\n")
    record = convert_dataset("sara", src, tmp_path / "out")
    assert record["splits"]["train"]["intents"] == {"affirm": 1, "greet": 1}
    assert [s["reason"] for s in record["skipped"]] == ["duplicate of train.tsv line 2", "intent id '7' is not in int_to_intent.tsv"]
    assert {f["path"] for f in record["source_files"]} == {"int_to_intent.tsv", "train.tsv", "dev.tsv", "test.tsv"}
    assert all(len(f["sha256"]) == 64 for f in record["source_files"])
    check_against_rasa(tmp_path / "out", record)


def test_snips_pairs_lines_and_refuses_mismatched_files(tmp_path):
    src = tmp_path / "snips"
    for folder in ("train", "valid", "test"):
        write(src / folder / "seq.in", "play some jazz\nbook a table\n")
        write(src / folder / "label", "PlayMusic\nBookRestaurant\n")
    record = convert_dataset("snips", src, tmp_path / "out")
    assert set(record["splits"]) == {"train", "dev", "test"}
    check_against_rasa(tmp_path / "out", record)
    write(src / "test" / "label", "PlayMusic\n")
    with pytest.raises(DataError, match="has 2 lines but .*label has 1"):
        convert_dataset("snips", src, tmp_path / "out2")


def test_rasa_yaml_reduces_entities_keeps_retrieval_intents_and_counts_the_rest(tmp_path):
    src = tmp_path / "bot"
    write(
        src / "data" / "nlu.yml",
        """version: "3.1"
nlu:
- intent: greet
  examples: |
    - hello
    - hi [Sara](name)
    - hi [Sara]{"entity": "name"}
    this line has no dash
- intent: faq/ask_price
  examples: |
    - how much is it
- intent: inform
  examples:
  - text: |
      I live in [Berlin](city)
    metadata:
      sentiment: neutral
- synonym: Berlin
  examples: |
    - berlin
- regex: zipcode
  examples: |
    - \\d{5}
- lookup: city
  examples: |
    - Berlin
""",
    )
    write(src / "data" / "responses.yml", "version: '3.1'\nresponses:\n  utter_faq/ask_price:\n  - text: free\n")
    write(src / "tests" / "test_nlu.yml", "version: '3.1'\nnlu:\n- intent: greet\n  examples: |\n    - hey [Sara](name)\n")
    record = convert_dataset("rasa", src, tmp_path / "out")
    train = load_intent_examples(tmp_path / "out" / "train.yml")
    assert train == [("how much is it", "faq/ask_price"), ("hello", "greet"), ("hi Sara", "greet"), ("I live in Berlin", "inform")]
    skipped = {(s["file"], s["line"]): s["reason"] for s in record["skipped"]}
    assert skipped[("data/nlu.yml", 7)] == "duplicate of data/nlu.yml line 6"
    assert skipped[("data/nlu.yml", 8)].startswith("example does not start with '-'")
    assert record["splits"]["test"]["intents"] == {"greet": 1}
    assert any("1 synonym item(s), 1 regex item(s), 1 lookup item(s)" in n for n in record["notes"])
    assert any("responses.yml has no 'nlu' section" in n for n in record["notes"])
    check_against_rasa(tmp_path / "out", record)


def test_csv_with_quoted_multiline_text_and_named_columns(tmp_path):
    src = tmp_path / "csv"
    write(src / "train.csv", 'id,utterance,intent\n1,"hello\nthere",greet\n2,bye,goodbye\n3,no label,\n4,[x](y) markup,greet\n')
    write(src / "validation.tsv", "utterance\tintent\nhi\tgreet\n")
    record = convert_dataset("csv", src, tmp_path / "out", text_column="utterance", label_column="intent")
    assert load_intent_examples(tmp_path / "out" / "train.yml") == [("bye", "goodbye"), ("hello there", "greet")]
    assert record["splits"]["train"]["whitespace_normalized"] == 1
    assert {(s["line"], s["reason"]) for s in record["skipped"]} == {
        (5, "empty 'intent'"),  # the quoted text spans lines 2-3
        (6, "text contains Rasa entity markup"),
    }
    assert record["splits"]["dev"]["examples"] == 1
    check_against_rasa(tmp_path / "out", record)


def test_csv_names_a_missing_column(tmp_path):
    write(tmp_path / "csv" / "train.csv", "text,category\nhi,greet\n")
    with pytest.raises(DataError, match="train.csv, line 1: no column 'label'"):
        convert_dataset("csv", tmp_path / "csv", tmp_path / "out")


def test_odd_texts_survive_the_round_trip_through_rasa(tmp_path):
    texts = ["emoji 😀 ok", "tab\there", "control \x07 bell", "- starts with a dash", "# not a comment", "'quoted' \"text\"", "a: b"]
    src = tmp_path / "csv"
    write(src / "train.csv", "text,label\n" + "".join(f'"{t.replace(chr(34), chr(34) * 2)}",odd label\n' for t in texts))
    record = convert_dataset("csv", src, tmp_path / "out")
    loaded = load_intent_examples(tmp_path / "out" / "train.yml")
    assert [t for t, _ in loaded] == [" ".join(t.split()) for t in texts]
    assert {i for _, i in loaded} == {"odd~20label"} and record["intent_labels"] == {"odd~20label": "odd label"}


def test_an_existing_output_is_not_overwritten_without_force(tmp_path):
    src = tmp_path / "sara"
    write(src / "int_to_intent.tsv", "0\taffirm\n1\tgreet\n")
    write(src / "train.tsv", "0\tyes\n1\thello\n")
    write(tmp_path / "out" / "keep.txt", "mine")
    with pytest.raises(RasaKDError, match="exists and is not empty; pass --force"):
        convert_dataset("sara", src, tmp_path / "out")
    assert (tmp_path / "out" / "keep.txt").read_text() == "mine"
    convert_dataset("sara", src, tmp_path / "out", overwrite=True)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["dataset.json", "train.yml"]


def test_cli_convert_prints_counts_and_reports_errors(tmp_path, capsys):
    src = tmp_path / "sara"
    write(src / "int_to_intent.tsv", "0\taffirm\n1\tgreet\n")
    write(src / "train.tsv", "0\tyes\n1\thello\n1\thello\n")
    assert cli.main(["convert", "sara", str(src), "--output", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "train        3         2        2        1" in out and "1 duplicate" in out
    assert json.loads((tmp_path / "out" / "dataset.json").read_text())["format"] == "sara"
    assert cli.main(["convert", "sara", str(tmp_path / "missing"), "--output", str(tmp_path / "o2")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("rasa-kd convert: error: sara: SOURCE ") and "does not exist" in err


# --- the shared data sets ------------------------------------------------------------------------

# Rows per split as ../shared/datasets/README.md gives them.
README_ROWS = {
    ("cola", "cola"): {"train": 8551, "dev": 1043},
    ("sst2", "sst2/glue"): {"train": 67349, "dev": 872},
    ("sst2-sentences", "sst2/sentence_level"): {"train": 6920, "dev": 872, "test": 1821},
    ("trec", "trec"): {"train": 5452, "test": 500},
    ("trec-fine", "trec"): {"train": 5452, "test": 500},
    ("sara", "sara/thesis_tsv"): {"train": 2853, "dev": 970, "test": 987},
    ("rasa", "sara/rasa_demo"): {"train": 4997, "test": 508},
    ("snips", "snips"): {"train": 13084, "dev": 700, "test": 700},
}
README_INTENTS = {"cola": 2, "sst2": 2, "sst2-sentences": 2, "trec": 6, "trec-fine": 50, "sara": 57, "rasa": 67, "snips": 7}


@pytest.mark.parametrize("fmt, folder", list(README_ROWS))
def test_shared_datasets_match_their_readme(shared_datasets, tmp_path, fmt, folder):
    record = convert_dataset(fmt, shared_datasets / folder, tmp_path / fmt)
    rows = {split: info["rows"] for split, info in record["splits"].items()}
    assert rows == README_ROWS[(fmt, folder)]
    assert len(record["splits"]["train"]["intents"]) == README_INTENTS[fmt]
    check_against_rasa(tmp_path / fmt, record)
    if fmt.startswith("trec"):
        assert record["notes"] == ["train_5500.label line 66 is not valid UTF-8; read it as latin-1"]


def test_dev_held_out_from_train_for_data_without_dev(tmp_path):
    src = tmp_path / "trec"
    write(src / "train_5500.label", "".join(f"{'HUM:ind' if i % 2 else 'LOC:city'} question number {i} ?\n" for i in range(40)))
    write(src / "TREC_10.label", "NUM:date When was it ?\n")
    record = convert_dataset("trec", src, tmp_path / "out", dev_size=10, seed=3)
    assert record["splits"]["dev"]["examples"] == 10 and record["splits"]["train"]["examples"] == 30
    assert record["dev_from_train"] == {"examples": 10, "seed": 3}
    train = {t for t, _ in load_intent_examples(tmp_path / "out" / "train.yml")}
    dev = {t for t, _ in load_intent_examples(tmp_path / "out" / "dev.yml")}
    assert not train & dev and len(train | dev) == 40
    again = convert_dataset("trec", src, tmp_path / "again", dev_size=10, seed=3)
    assert again["splits"]["dev"]["intents"] == record["splits"]["dev"]["intents"]
    check_against_rasa(tmp_path / "out", record)
    with pytest.raises(DataError, match="has a dev split of its own"):
        convert_dataset("cola", _cola_fixture(tmp_path / "cola"), tmp_path / "x", dev_size=1)


def _cola_fixture(src):
    write(src / "in_domain_train.tsv", "gj04\t1\t\tThe cat sat.\ngj04\t0\t*\tCat the sat.\n")
    write(src / "in_domain_dev.tsv", "gj04\t1\t\tA dog ran.\n")
    write(src / "out_of_domain_dev.tsv", "clc95\t0\t*\tRan dog a.")
    return src


# --- few-shot versions ---------------------------------------------------------------------------


def few_shot_source(folder: Path) -> Path:
    """A Sara-format set: 3 intents of 30 training sentences, some of which are also dev or test sentences."""
    names = ["affirm", "deny", "greet"]
    write(folder / "int_to_intent.tsv", "".join(f"{i}\t{n}\n" for i, n in enumerate(names)))
    write(folder / "train.tsv", "".join(f"{i}\t{n} sentence {k}\n" for i, n in enumerate(names) for k in range(30)))
    write(folder / "dev.tsv", "0\taffirm sentence 3\n1\tDENY  sentence 4\n")  # also in training (case and spaces differ)
    write(folder / "test.tsv", "2\tgreet sentence 5\n2\ta new greeting\n0\taffirm sentence 7\n")
    return folder


def test_few_shot_sampling_is_deterministic_and_keeps_test_sentences_out(tmp_path):
    src = few_shot_source(tmp_path / "sara")
    runs = [convert_dataset("sara", src, tmp_path / f"out{i}", per_intent=10, seed=5) for i in range(2)]
    first, second = (load_intent_examples(tmp_path / f"out{i}" / "train.yml") for i in range(2))
    assert first == second and len(first) == 30
    assert Counter(intent for _, intent in first) == {"affirm": 10, "deny": 10, "greet": 10}
    held_out = {"affirm sentence 3", "deny sentence 4", "greet sentence 5", "affirm sentence 7"}
    assert not {text for text, _ in first} & held_out
    assert not (tmp_path / "out0" / "dev.yml").exists()  # a small bot has no dev split
    assert len(load_intent_examples(tmp_path / "out0" / "test.yml")) == 3  # the test split is whole
    assert runs[0]["few_shot"] == {"per_intent": 10, "seed": 5, "train_examples_before": 90, "dev_dropped": True}
    other = load_intent_examples(convert_dataset("sara", src, tmp_path / "seed6", per_intent=10, seed=6) and tmp_path / "seed6" / "train.yml")
    assert other != first  # another seed, another draw
    smaller = load_intent_examples(convert_dataset("sara", src, tmp_path / "five", per_intent=5, seed=5) and tmp_path / "five" / "train.yml")
    assert set(smaller) <= set(first)  # fewer examples per intent: a subset of the same seed's draw


def test_few_shot_sampling_does_not_depend_on_the_order_of_the_examples():
    from rasa_kd.data.convert import sample_per_intent

    examples = {"a": [f"a{i}" for i in range(20)], "b": [f"b{i}" for i in range(20)]}
    reordered = {"b": examples["b"][::-1], "a": examples["a"][::-1]}
    assert sample_per_intent(examples, 4, 0) == sample_per_intent(reordered, 4, 0)
    with pytest.raises(DataError, match="--per-intent must be at least 1"):
        sample_per_intent(examples, 0, 0)

"""The benchmark scripts run end to end on a tiny subset (tiny models, a fake Sara folder)."""
import json
import re
import sys
from pathlib import Path

import pytest

from tests.tiny_models import DEV_EXAMPLES, INTENT_EXAMPLES, TEST_EXAMPLES, TINY_DISTILL

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.e2e


def fake_sara(folder: Path) -> Path:
    """The thesis TSV layout, filled with the tiny intent data."""
    folder.mkdir(parents=True)
    intents = sorted(INTENT_EXAMPLES)
    (folder / "int_to_intent.tsv").write_text("".join(f"{i}\t{name}\n" for i, name in enumerate(intents)))
    for split, examples in (("train", INTENT_EXAMPLES), ("dev", DEV_EXAMPLES), ("test", TEST_EXAMPLES)):
        rows = [f"{intents.index(intent)}\t{text}\n" for intent, texts in examples.items() for text in texts]
        (folder / f"{split}.tsv").write_text("".join(rows))
    return folder


@pytest.mark.slow  # nearly two minutes (DIET included); the default run stays under 15 minutes
def test_run_task_and_report_on_a_tiny_subset(tmp_path, tiny_bert_dir):
    sys.path.insert(0, str(REPO / "benchmarks"))
    import report
    import run_task

    data = tmp_path / "datasets"
    fake_sara(data / "sara" / "thesis_tsv")
    settings = [f"{key}={value}" for key, value in {**TINY_DISTILL, "teacher.model": str(tiny_bert_dir),
                                                    "student.training.epochs": 3, "transfer_set.size": 150}.items()]
    args = ["--task", "sara", "--data-dir", str(data), "--work", str(tmp_path / "work"), "--results", str(tmp_path / "results"),
            "--set", "tinybert:student.training.epochs=2",
            "--diet-epochs", "2", "--latency-sentences", "3", "--latency-batches", "1", "--no-progress", "--limit", "40"]
    for item in settings:
        args += ["--set", item]
    assert run_task.main(args) == 0
    result = json.loads((tmp_path / "results" / "task-sara-limit40.json").read_text())
    assert set(result["models"]) == {"teacher", "bilstm", "tinybert", "diet"}
    for model in result["models"].values():
        assert set(model["scores"]) == {"dev", "test"} and model["params"] > 0 and model["size_bytes"] > 0
        assert model["latency_ms"]["batch_1"] > 0 and model["speedup_vs_teacher"]["batch_256_per_example"] > 0
    assert result["models"]["teacher"]["retention"]["test"] == 1.0
    assert result["data"] == {"train": 36, "dev": 9, "test": 9}
    assert re.fullmatch(r"\d+ x \d+ BiLSTM, dense \d+", result["models"]["bilstm"]["shape"])
    assert re.fullmatch(r"\d+ x \d+, \d+ heads, intermediate \d+", result["models"]["tinybert"]["shape"])

    (tmp_path / "results" / "task-sara.json").write_text(json.dumps(result))
    sys.argv = ["report.py", "--results", str(tmp_path / "results"), "--output", str(tmp_path / "RESULTS.md"),
                "--notes", str(tmp_path / "none.md")]
    assert report.main() == 0
    text = (tmp_path / "RESULTS.md").read_text()
    assert f"| sara (micro_f1) | BiLSTM student ({result['models']['bilstm']['shape']}) |" in text and "87.5 dev / 88.3 test" in text
    assert (tmp_path / "results" / "score_vs_latency.png").is_file() and (tmp_path / "results" / "retention.png").is_file()


def test_the_fewshot_table_gives_mean_and_spread_over_seeds(tmp_path):
    sys.path.insert(0, str(REPO / "benchmarks"))
    import fewshot

    def result(name, teacher, bilstm):
        model = {"accuracy": bilstm, "retention": bilstm / teacher, "speedup_vs_teacher": None, "size_vs_teacher": 0.2,
                 "distill_seconds": 120.0}
        return {"set": name, "data": {"train": 70}, "models": {
            "teacher": {"accuracy": teacher}, "bilstm": model, "tinybert": dict(model),
            "diet": {"accuracy": 0.5, "train_seconds": 60.0}}}

    (tmp_path / "t").mkdir()
    for seed, (teacher, bilstm) in enumerate([(0.90, 0.80), (0.94, 0.86)]):
        (tmp_path / "t" / f"snips-10-s{seed}.json").write_text(json.dumps(result(f"snips-10-s{seed}", teacher, bilstm)))
    row = next(line for line in fewshot.report(tmp_path, "t").splitlines() if line.startswith("| snips-10 |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[:5] == ["snips-10", "2", "70", "92.0 ± 2.8", "83.0 ± 4.2"]  # mean ± sample standard deviation
    assert cells[9] == "-"  # latency not measured yet: no figure rather than a made-up one


def test_batch_1_timing_samples_the_whole_test_file_and_turns_the_cycle():
    sys.path.insert(0, str(REPO / "benchmarks"))
    import run_task

    sentences = [f"s{i}" for i in range(100)]  # as a test file: one intent's messages after another's

    def timed(calls):
        seen = []
        run_task.batch_1_in_blocks({"a": lambda text: seen.append(text[0]), "b": lambda text: None}, sentences, calls, block=5)
        return seen

    first = timed(20)
    assert len(first) == len(set(first)) == 20
    assert sum(int(text[1:]) >= 50 for text in first) >= 5  # not the file's first 20 sentences
    assert timed(20) == first  # seeded: every run times the same sentences
    assert sorted(set(timed(250))) == sorted(sentences)  # more calls than sentences: every one, in turn

    firsts = []  # which runner starts each block
    runners = {name: (lambda text, name=name: firsts.append(name)) for name in ("teacher", "bilstm", "tinybert")}
    run_task.batch_1_in_blocks(runners, sentences, 15, block=5)
    assert firsts[::5] == ["teacher", "bilstm", "tinybert", "bilstm", "tinybert", "teacher", "tinybert", "teacher", "bilstm"]


def test_fewshot_takes_diet_from_an_earlier_run_of_the_same_set_only(tmp_path):
    sys.path.insert(0, str(REPO / "benchmarks"))
    import fewshot

    train, test = tmp_path / "train.yml", tmp_path / "test.yml"
    train.write_text("a"), test.write_text("b")
    counts = {"train": 70, "test": 699}
    hashes = {"train": fewshot.sha256_file(train), "test": fewshot.sha256_file(test)}
    diet = {"accuracy": 0.89, "size_bytes": 10, "train_seconds": 60.0, "archive": "/gone/diet.tar.gz", "params": 5}
    (tmp_path / "old").mkdir()
    saved = {"set": "snips-10-s0", "date": "2026-11-26", "data": counts, "models": {"diet": diet}}
    (tmp_path / "old" / "snips-10-s0.json").write_text(json.dumps(saved))

    taken = fewshot.earlier_diet(tmp_path, "old", "snips-10-s0", counts, hashes)
    assert taken == {"accuracy": 0.89, "size_bytes": 10, "train_seconds": 60.0, "archive": "/gone/diet.tar.gz",
                     "from_tag": "old", "from_date": "2026-11-26"}
    with pytest.raises(SystemExit, match="70.*examples, this set has"):
        fewshot.earlier_diet(tmp_path, "old", "snips-10-s0", {"train": 140, "test": 699}, hashes)
    with pytest.raises(SystemExit, match="does not exist"):
        fewshot.earlier_diet(tmp_path, "old", "snips-20-s0", counts, hashes)
    saved["data_sha256"] = {"train": "0" * 64, "test": "1" * 64}
    (tmp_path / "old" / "snips-10-s0.json").write_text(json.dumps(saved))
    with pytest.raises(SystemExit, match="other files"):
        fewshot.earlier_diet(tmp_path, "old", "snips-10-s0", counts, hashes)

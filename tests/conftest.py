import os

# Before Rasa or TensorFlow are imported anywhere: no telemetry, quiet TensorFlow.
os.environ["RASA_TELEMETRY_ENABLED"] = "false"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from rasa_kd.openblas import choose_kernels  # noqa: E402

choose_kernels()  # as rasa-kd's commands do: NumPy's OpenBLAS with kernels this CPU runs well

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from tests.tiny_models import tiny_distill_config, write_splits, write_tiny_bert  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("RASA_KD_DATA_DIR", REPO.parent / "shared" / "datasets"))


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory) -> Path:
    """A random 2-layer, 32-hidden BERT with a tokenizer, saved as a Hugging Face folder."""
    return write_tiny_bert(tmp_path_factory.mktemp("tiny_bert"))


@pytest.fixture()
def shared_datasets() -> Path:
    """../shared/datasets, or a skip that says where it was looked for."""
    if not DATA_DIR.is_dir():
        pytest.skip(f"shared data sets not found at {DATA_DIR} (set RASA_KD_DATA_DIR)")
    return DATA_DIR


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    """train.yml, dev.yml, test.yml of the tiny intent data."""
    return write_splits(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="session")
def bilstm_run(tmp_path_factory, tiny_data, tiny_bert_dir):
    """A whole `distill` of the tiny data with a BiLSTM student: (OUT, metrics)."""
    from rasa_kd.distill import pipeline

    out = tmp_path_factory.mktemp("run") / "bilstm"
    return out, pipeline.distill(tiny_distill_config(tiny_data, tiny_bert_dir), out, progress=False)


@pytest.fixture(scope="session")
def tinybert_run(tmp_path_factory, tiny_data, tiny_bert_dir, bilstm_run):
    """A tiny-BERT student of the same teacher: (OUT, metrics)."""
    from rasa_kd.distill import pipeline

    out = tmp_path_factory.mktemp("run") / "tinybert"
    # The teacher's input rows, not a small bot's contextual ones: this random 2-layer teacher, never pretrained,
    # folds every WordPiece onto its 3 intents (97% of the contextual rows' variance in 3 directions, against
    # 40-88% in as many directions as intents for the MiniLM teachers of benchmarks/NOTES.md), which leaves
    # a 16-wide tiny-BERT too little to tell words apart (24 of 36 training sentences right, 36 with input rows).
    config = tiny_distill_config(tiny_data, tiny_bert_dir, **{"student.type": "tinybert", "teacher.path": str(bilstm_run[0] / "teacher"),
                                                              "student.tinybert.embeddings": "teacher"})
    return out, pipeline.distill(config, out, progress=False)

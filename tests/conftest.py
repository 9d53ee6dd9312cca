import os

# Before Rasa or TensorFlow are imported anywhere: no telemetry, quiet TensorFlow.
os.environ["RASA_TELEMETRY_ENABLED"] = "false"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from tests.tiny_models import write_tiny_bert  # noqa: E402

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

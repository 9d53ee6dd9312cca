"""Mean WordPieces per test sentence ([CLS] and [SEP] included) of few-shot sets, with the teacher's
tokenizer: why a BiLSTM's speed-up over its teacher differs between sets (benchmarks/NOTES.md).

    .venv/bin/python benchmarks/sentence_lengths.py sara-10-s0 snips-10-s0
"""
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(names):
    from rasa_kd.data.nlu_yaml import load_intent_examples
    from rasa_kd.models import bert

    for name in names:
        tokenizer = bert.load_tokenizer(ROOT / "runs" / "fewshot" / "defaults" / name / "bilstm" / "teacher")
        texts = [t for t, _ in load_intent_examples(ROOT / "runs" / "fewshot" / "data" / name / "test.yml")]
        lengths = [len(tokenizer(t)["input_ids"]) for t in texts]
        print(f"{name}: {sum(lengths) / len(lengths):.1f} WordPieces per test sentence ({len(texts)} sentences)")


if __name__ == "__main__":
    main(sys.argv[1:] or ["sara-10-s0", "snips-10-s0"])

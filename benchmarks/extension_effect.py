"""What the vocabulary extension does to a saved student: accuracy on each file with the extension
rows and with the trained vocabulary alone (unseen WordPieces as [UNK]), the same weights otherwise.

    .venv/bin/python benchmarks/extension_effect.py runs/noregression/trec/bilstm/student \
        runs/noregression/trec/data/trec/dev.yml runs/noregression/trec/data/trec/test.yml
"""
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(folder: str, *files: str) -> None:
    from rasa_kd.data.nlu_yaml import load_intent_examples
    from rasa_kd.models.student import StudentModel

    for file in files:
        pairs = load_intent_examples(Path(file))
        texts, gold = [t for t, _ in pairs], [i for _, i in pairs]
        student = StudentModel.load(Path(folder))

        def accuracy() -> float:
            return float(np.mean([student.labels[i] == g for i, g in zip(student.logits(texts).argmax(axis=1), gold)]))

        extended = accuracy()
        student._extend(None)  # the trained rows alone
        student.use_numpy()
        print(f"{file}: with the extension {100 * extended:.2f}, trained vocabulary alone {100 * accuracy():.2f}")


if __name__ == "__main__":
    main(*sys.argv[1:])

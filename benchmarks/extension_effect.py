"""What the vocabulary extension does to a saved student: accuracy on each file with the extension
rows as saved, re-quantised to 4 bits a value (from the saved rows), and with the trained vocabulary
alone (unseen WordPieces as [UNK]), the same weights otherwise; and the folder's size as saved and
saved again in today's format (4-bit extension, no tokenizer.json).

    .venv/bin/python benchmarks/extension_effect.py runs/noregression/trec/bilstm/student \
        runs/noregression/trec/data/trec/dev.yml runs/noregression/trec/data/trec/test.yml
"""
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(folder: str, *files: str) -> None:
    from rasa_kd.data.nlu_yaml import load_intent_examples
    from rasa_kd.models.student import StudentModel, VocabExtension

    student = StudentModel.load(Path(folder))
    as_saved = student.extension
    at_4_bits = VocabExtension.quantise(as_saved.teacher_ids, as_saved.table(), bits=4)
    student._extend(at_4_bits)
    with tempfile.TemporaryDirectory() as tmp:
        print(f"{folder}: {_size(Path(folder)) / 1e6:.2f} MB as saved, {_size(student.save(Path(tmp) / 'student')) / 1e6:.2f} MB "
              "saved again today")
    for file in files:
        pairs = load_intent_examples(Path(file))
        texts, gold = [t for t, _ in pairs], [i for _, i in pairs]
        scores = []
        for extension in (as_saved, at_4_bits, None):  # None: the trained rows alone
            student._extend(extension)
            student.use_numpy()
            scores.append(100 * float(np.mean([student.labels[i] == g for i, g in zip(student.logits(texts).argmax(axis=1), gold)])))
        print(f"{file}: with the extension as saved {scores[0]:.2f}, at 4 bits {scores[1]:.2f}, "
              f"trained vocabulary alone {scores[2]:.2f}")


def _size(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


if __name__ == "__main__":
    main(*sys.argv[1:])

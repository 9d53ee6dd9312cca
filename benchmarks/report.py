"""Turn benchmarks/results/task-*.json into benchmarks/RESULTS.md with plots.

    .venv/bin/python benchmarks/report.py
"""
import argparse
import sys
from pathlib import Path
from typing import Dict, List

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rasa_kd.io_utils import read_json, write_text  # noqa: E402

ORDER = ["sst2", "cola", "trec", "sara", "snips"]
MODELS = ["teacher", "bilstm", "tinybert", "diet"]
NAMES = {"teacher": "teacher (MiniLM-L6, fine-tuned)", "bilstm": "BiLSTM student", "tinybert": "tiny-BERT student",
         "diet": "DIET (Rasa default pipeline)"}
# ../shared/datasets/README.md: BERT-large teacher and best student of the 2020 thesis, and others.
THESIS = {
    "sst2": {"metric": "accuracy", "teacher": "91.5 dev / 93.1 test", "student": "BiLSTM 2.4M: 91.2 dev / 92.2 test",
             "other": "Tang et al. BiLSTM 90.7; TinyBERT-4 92.6"},
    "cola": {"metric": "MCC", "teacher": "59.9 dev / 54.6 test", "student": "BiLSTM 15.4M: 44.2 dev / 27.9 test",
             "other": "Tang & Lin 40.0; TinyBERT-4 43.3"},
    "sara": {"metric": "micro-F1", "teacher": "87.5 dev / 88.3 test", "student": "BiLSTM 5.9M: 86.5 dev / 86.4 test", "other": "-"},
    "trec": {"metric": "accuracy", "teacher": "-", "student": "-", "other": "-"},
    "snips": {"metric": "accuracy", "teacher": "-", "student": "-", "other": "-"},
}
TARGET_RETENTION = {"cola": 0.85}


def load(results: Path) -> Dict[str, dict]:
    found = {}
    for task in ORDER:
        path = results / f"task-{task}.json"
        if path.is_file():
            found[task] = read_json(path)
    return found


def plots(tasks: Dict[str, dict], folder: Path) -> List[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    files = []
    fig, axes = plt.subplots(1, len(tasks), figsize=(4 * len(tasks), 3.6), squeeze=False)
    for ax, (task, r) in zip(axes[0], tasks.items()):
        split = r["splits"][-1]
        for name, marker in zip(MODELS, "o^sD"):
            m = r["models"][name]
            ax.scatter(m["latency_ms"]["batch_1"], 100 * m["scores"][split][r["metric"]], marker=marker, s=60, label=name)
        ax.set_xscale("log")
        ax.set_xlabel("batch-1 latency, ms (log)")
        ax.set_ylabel(f"{r['metric']} ({split})")
        ax.set_title(task)
        ax.grid(alpha=0.3)
    # One legend below the panels, where it cannot cover a point.
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(MODELS), fontsize=8)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    fig.savefig(folder / "score_vs_latency.png", dpi=110)
    plt.close(fig)
    files.append("results/score_vs_latency.png")

    fig, ax = plt.subplots(figsize=(1.6 * len(tasks) + 2, 4.0))
    width = 0.35
    lowest = 100.0
    for offset, name in ((-width / 2, "bilstm"), (width / 2, "tinybert")):
        values = [100 * (r["models"][name]["retention"][r["splits"][-1]] or 0) for r in tasks.values()]
        lowest = min(lowest, *values)
        bars = ax.bar([i + offset for i in range(len(tasks))], values, width, label=name)
        ax.bar_label(bars, fmt="%.1f", fontsize=8)
    for i, task in enumerate(tasks):  # each task's own target (97%, CoLA 85%)
        goal = 100 * TARGET_RETENTION.get(task, 0.97)
        ax.hlines(goal, i - width, i + width, color="gray", linestyle="--", linewidth=1, label="target" if i == 0 else None)
    ax.set_xticks(range(len(tasks)))
    ax.set_xticklabels(list(tasks))
    ax.set_ylabel("retention, % of teacher (last split)")
    ax.set_ylim(min(80.0, lowest - 5), 103)  # the differences that matter are a few points
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=3)
    fig.tight_layout()
    fig.savefig(folder / "retention.png", dpi=110)
    plt.close(fig)
    files.append("results/retention.png")
    return files


def table(tasks: Dict[str, dict]) -> List[str]:
    lines = ["| task | model | score | retention | params | size on disk | batch-1 ms (speed-up) | ms/example at 256 (speed-up) |",
             "|---|---|---|---|---|---|---|---|"]
    for task, r in tasks.items():
        for name in MODELS:
            m = r["models"][name]
            score = " / ".join(f"{s} {100 * m['scores'][s][r['metric']]:.1f}" for s in r["splits"])
            retention = "-" if name == "teacher" else " / ".join(f"{100 * m['retention'][s]:.1f}%" for s in r["splits"] if m["retention"][s] is not None)
            lat, up = m["latency_ms"], m["speedup_vs_teacher"]
            label = f"{NAMES[name]} ({m['shape']})" if m.get("shape") else NAMES[name]
            lines.append(f"| {task} ({r['metric']}) | {label} | {score} | {retention} | {m['params'] / 1e6:.2f}M | "
                         f"{m['size_bytes'] / 1e6:.1f} MB | {lat['batch_1']:.2f} ({up['batch_1']:.1f}x) | "
                         f"{lat['batch_256_per_example']:.3f} ({up['batch_256_per_example']:.1f}x) |")
    return lines


def targets(tasks: Dict[str, dict]) -> List[str]:
    lines = ["| task | retention >= target (BiLSTM, tiny-BERT) | >= 10x faster at batch 1 (BiLSTM, tiny-BERT) | above DIET (BiLSTM, tiny-BERT) |",
             "|---|---|---|---|"]
    for task, r in tasks.items():
        split, metric = r["splits"][-1], r["metric"]
        goal = TARGET_RETENTION.get(task, 0.97)
        cells = []
        for check in (lambda m: m["retention"][split] >= goal,
                      lambda m: m["speedup_vs_teacher"]["batch_1"] >= 10,
                      lambda m: m["scores"][split][metric] > r["models"]["diet"]["scores"][split][metric]):
            cells.append(", ".join("met" if check(r["models"][k]) else "MISSED" for k in ("bilstm", "tinybert")))
        lines.append(f"| {task} (goal {goal:.0%}) | " + " | ".join(cells) + " |")
    return lines


def stage_table(tasks: Dict[str, dict]) -> List[str]:
    lines = ["| task | train / dev / test examples | transfer set | teacher | augment | label | BiLSTM | tiny-BERT | DIET (`rasa train nlu`) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for task, r in tasks.items():
        b, t = r["stage_seconds"]["bilstm"], r["stage_seconds"]["tinybert"]
        counts = " / ".join(str(r["data"].get(s, "-")) for s in ("train", "dev", "test"))
        fmt = lambda s: f"{s / 60:.1f} min" if s is not None else "-"  # noqa: E731
        lines.append(f"| {task} | {counts} | {r['transfer_set']['size']:,} | {fmt(b.get('teacher'))} | {fmt(b.get('augment'))} | "
                     f"{fmt(b.get('label'))} | {fmt(b.get('student'))} | {fmt(t.get('student'))} | {fmt(r.get('diet_train_seconds'))} |")
    return lines


def scaling_sections(results: Path) -> List[str]:
    """Streamed against in-memory transfer sets (benchmarks/streaming_memory.py) and one device against 2
    replicas or workers (benchmarks/worker_throughput.py), where measured."""
    lines: List[str] = []
    memory = results / "streaming_memory.json"
    if memory.is_file():
        run = read_json(memory)
        lines += ["", "## Past one machine: memory as the transfer set grows", "",
                  f"`.venv/bin/python {run['command']}` "
                  f"({run['date']}; shards of {run['shard_size']:,} sentences; each row its own process). RSS before: "
                  "TensorFlow and the models loaded; peak: the process's high-water mark (VmHWM).", "",
                  "| transfer set | stage | sentences | seconds | RSS before (MB) | peak RSS (MB) | peak - before (MB) |",
                  "|---|---|---|---|---|---|---|"]
        for r in run["rows"]:
            lines.append(f"| {r['mode'].replace('_', ' ')} | {r['stage'].replace('_', ' ')} | {r['sentences']:,} | {r['seconds']:.1f} | "
                         f"{r['rss_before_mb']:.0f} | {r['peak_rss_mb']:.0f} | {r['peak_rss_mb'] - r['rss_before_mb']:.0f} |")
    throughput = results / "worker_throughput.json"
    if throughput.is_file():
        run = read_json(throughput)
        lines += ["", "## Past one machine: one device, 2 mirrored CPU devices, 2 local workers", "",
                  f"`.venv/bin/python benchmarks/worker_throughput.py` ({run['date']}; {run['sentences']:,} sentences, "
                  "seconds per step of the second epoch; the 2 CPU cores are shared by every replica).", "",
                  "| student | parameters | run | global batch | replicas | ms per step | sentences per second |",
                  "|---|---|---|---|---|---|---|"]
        for r in run["rows"]:
            lines.append(f"| {r['kind']} | {r['params']:,} | {r['mode'].replace('_', ' ')} | {r['batch_size']} | {r['replicas']} | "
                         f"{1000 * r['seconds_per_step']:.1f} | {r['batch_size'] / r['seconds_per_step']:.0f} |")
        if run.get("labelling"):
            lines += ["", "Labelling with the MiniLM teacher, one process against two on one shard cache (each shard computed once):", "",
                      "| workers | sentences | labelling seconds (slowest worker) | sentences per second | shards computed by each |",
                      "|---|---|---|---|---|"]
            for r in run["labelling"]:
                lines.append(f"| {r['workers']} | {r['sentences']:,} | {r['labelling_seconds']:.1f} | "
                             f"{r['sentences'] / r['labelling_seconds']:.0f} | {', '.join(map(str, r['shards_by_worker']))} |")
    return lines


# The few-shot tables, newest defaults first: (tag of benchmarks/fewshot.py, heading, how it was run).
FEWSHOT_TABLES = [
    ("ls003", "Small bots: few-shot sets with the defaults of 2026-11-28",
     "`.venv/bin/python benchmarks/fewshot.py --tag ls003 --diet-from defaults --set teacher.label_smoothing=0.03` "
     "(the d1127 protocol with the teacher's label smoothing, today's default; DIET's scores taken from the "
     "`defaults` runs below), over three sessions from copies of the code at c378170, 8215e6e and 95b8179 (the "
     "last five Sara sets; sara-10-s0's teacher, trained before a stop, reused by its fingerprint), "
     "partly beside other runs, so distil times are not comparable; then `--time` alone over all 19 sets. Both "
     "students read the teacher's contextual rows below 2,000 examples, the teacher trains with outlier "
     "exposure and label smoothing 0.03, the student keeps a tenth of the examples for its threshold."),
    ("d1127", "Small bots: few-shot sets with the defaults of 2026-11-27",
     "`.venv/bin/python benchmarks/fewshot.py --tag d1127 --diet-from defaults` (DIET's scores taken from the "
     "`defaults` runs below: DIET does not depend on rasa-kd's settings), the tiny-BERT of the first eight sets "
     "distilled again from its contextual rows (`--models tinybert`, or the quick runs of benchmarks/NOTES.md's fifth "
     "round: each file says which under `redone`), both students of Sara-20/40 seeds 0/1 at 20 epochs (the default "
     "from 1,000 examples without dev since the evening: `--models`, or the sixth round's quick runs; seed 2 of "
     "Sara-20/40 run with them by `--skip-done --sets sara-20-s2 sara-40-s2`); then `--time` alone. The students' "
     "temperature changes no accuracy. Distil times mostly with other runs sharing the 2 cores (Sara-20/40 seed 2 "
     "alone: 9.2 and 8.1 min for the BiLSTM; `benchmarks/train_time.py` times `rasa train` alone). Both students "
     "read the teacher's contextual rows below 2,000 examples, the teacher trains with outlier exposure, the "
     "student keeps a tenth of the examples for its threshold."),
    ("defaults", "Small bots: few-shot sets with the defaults of 2026-11-26",
     "`.venv/bin/python benchmarks/fewshot.py`, then `--time` alone, then `--report`. Before outlier exposure (most "
     "sets) and the students' contextual rows: benchmarks/NOTES.md has the rounds in between."),
]


def small_bot_sections(results: Path) -> List[str]:
    """The few-shot table (benchmarks/fewshot.py), the full-size reruns after the small-bot defaults
    (benchmarks/noregression.py) and the confidence tables (benchmarks/confidence.py), where measured."""
    lines: List[str] = []
    for tag, title, how in FEWSHOT_TABLES:
        fewshot = results / "fewshot" / f"{tag}.md"
        if fewshot.is_file():
            body = fewshot.read_text(encoding="utf-8").strip().splitlines()[1:]  # its own title dropped
            lines += ["", f"## {title}", "", how, *body]
    rerun = results / "noregression.json"
    if rerun.is_file():
        lines += ["", "## Full-size tasks after the small-bot defaults (BiLSTM student)", "",
                  "Before: the task's row above (before the small-bot defaults); after: the same config and seed, the teacher "
                  "trained again, with the defaults of the date given (on 2026-11-28: outlier exposure and label smoothing "
                  "on, and for TREC since its second run no outlier frames (MAX_FRAME_SHARE); why TREC's BiLSTM lost: benchmarks/NOTES.md, \"Full-size tasks with today's defaults\").", "",
                  "| task | metric | split | date | teacher before | teacher after | BiLSTM before | BiLSTM after | student MB before | after | command |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]
        for task, r in read_json(rerun).items():
            for split in r["after"]["bilstm"]:
                lines.append(f"| {task} | {r['metric']} | {split} | {r['date']} | {100 * r['before']['teacher'][split]:.2f} | "
                             f"{100 * r['after']['teacher'][split]:.2f} | {100 * r['before']['bilstm'][split]:.2f} | "
                             f"{100 * r['after']['bilstm'][split]:.2f} | {r['student_size_bytes']['before'] / 1e6:.1f} | "
                             f"{r['student_size_bytes']['after'] / 1e6:.1f} | `{r['command']}` |")
            for seed, again in r.get("student_seeds", {}).items():  # the same student with another seed
                for split, value in again["bilstm"].items():
                    lines.append(f"| {task} | {r['metric']} | {split}, student seed {seed} | {r['date']} | - | - | - | {100 * value:.2f} | - | - | "
                                 f"`{again['command']}` |")
    timing = results / "train_time.json"
    if timing.is_file():
        lines += ["", "## `rasa train nlu` on a small bot (benchmarks/train_time.py, alone)", "",
                  "| bot | examples | intents | model | minutes | date | machine |", "|---|---|---|---|---|---|---|"]
        for bot, r in read_json(timing).items():
            for model, seconds in r["seconds"].items():
                lines.append(f"| {bot} | {r['examples']} | {r['intents']} | {model} | {seconds / 60:.1f} | {r['date']} | {r['machine']} |")
    for table_file in sorted((results / "confidence").glob("*.md")):
        body = table_file.read_text(encoding="utf-8").strip().splitlines()
        lines += ["", f"## {body[0].lstrip('# ')}", *body[1:]]
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "RESULTS.md")
    parser.add_argument("--notes", type=Path, default=ROOT / "benchmarks" / "NOTES.md",
                        help="hand-written findings appended to the report")
    args = parser.parse_args()
    tasks = load(args.results)
    if not tasks:
        print(f"no task-*.json in {args.results}; run benchmarks/run_all.py first")
        return 1
    first = next(iter(tasks.values()))
    images = plots(tasks, args.results)
    lines = [
        "# Benchmarks: students against their teacher, DIET and the 2020 thesis",
        "",
        f"Measured {', '.join(sorted({r['date'] for r in tasks.values()}))} on {first['machine']}; "
        f"rasa-kd {first['versions'].get('rasa-kd')}, Rasa {first['versions'].get('rasa')}, "
        f"TensorFlow {first['versions'].get('tensorflow')}. Every figure comes from `benchmarks/results/task-*.json`.",
        "",
        "Commands (each task on its own, or all of them and then this report):",
        "",
        "```bash",
        *[r["command"].replace("python ", ".venv/bin/python ", 1) for r in tasks.values()],
        ".venv/bin/python benchmarks/run_all.py      # all tasks, then benchmarks/report.py",
        "```",
        "",
        "## Scores, size and speed",
        "",
        "Scores are percentages on the split named (Sara: micro-F1; CoLA: MCC; others: accuracy). Retention is the",
        "student's (or DIET's) score over the teacher's. Latencies are CPU wall time in one process, measured",
        "interleaved in the same run: one sentence (batch 1, tokenization included) and per example in batches of 256.",
        "Students run on NumPy at batch 1 and TensorFlow at batch 256; the teacher on TensorFlow; DIET behind Rasa's",
        "own graph (its tokenizer and featurizers included, as `rasa run` computes it).",
        "",
        *table(tasks),
        "",
        f"![score against latency]({images[0]})",
        "",
        f"![retention]({images[1]})",
        "",
        "## Targets",
        "",
        *targets(tasks),
        "",
        "## The 2020 thesis and others on the same data (from ../shared/datasets/README.md)",
        "",
        "| task | metric | BERT-large teacher (thesis) | best thesis student | others |",
        "|---|---|---|---|---|",
        *[f"| {t} | {THESIS[t]['metric']} | {THESIS[t]['teacher']} | {THESIS[t]['student']} | {THESIS[t]['other']} |" for t in tasks],
        "",
        "Differences to keep in mind: the thesis scored SST-2 and CoLA test on the GLUE server; here SST-2 test is",
        "the labelled sentence-level test set and CoLA is scored on its dev set. Exact duplicates are removed from",
        "every split (Rasa's loader drops them), so Sara's test set has 948 distinct examples, not 987 rows.",
        "",
        "## Wall time of each stage",
        "",
        *stage_table(tasks),
        "",
        "## Scaled-down settings",
        "",
        "The thesis used a BERT-large teacher, GPU training and transfer sets of up to millions of GPT-2 sentences.",
        "Here: the 6-layer MiniLM teacher, Tang et al.'s rules for augmentation (no GPT-2 weights are available",
        "offline), and the transfer-set sizes and epochs of `configs/distill/TASK.yml` (each file says what was",
        "scaled down and how to scale up). DIETClassifier epochs: "
        + ", ".join(f"{t} {r['diet_epochs']}" for t, r in tasks.items()) + " (Rasa's default is 100). DIET's pipeline is",
        "Rasa's default NLU pipeline without its FallbackClassifier, which would turn answers below 0.3 confidence",
        "into `nlu_fallback` (scored as wrong); the students have no fallback either.",
        "",
        "| task | overrides of configs/distill/TASK.yml in this run |",
        "|---|---|",
        *[f"| {t} | {', '.join(f'{k}: {v}' for k, v in {**r['overrides']['all'], **{f'bilstm {k}': v for k, v in r['overrides']['bilstm'].items()}, **{f'tiny-BERT {k}': v for k, v in r['overrides']['tinybert'].items()}}.items()) or 'none'} |"
          for t, r in tasks.items()],
    ]
    lines += small_bot_sections(args.results)
    lines += scaling_sections(args.results)
    if args.notes.is_file():
        lines += ["", args.notes.read_text(encoding="utf-8").strip()]
    write_text(args.output, "\n".join(lines) + "\n")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Scores, sizes and latencies of the teacher and the student, measured in the same run, and the
human-readable report with plots."""
import logging
import statistics
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

logger = logging.getLogger(__name__)

NO_INTENT = "\0none"  # stands for a prediction of no intent (None) where scikit-learn needs a label


def classification_scores(gold: Sequence[str], predicted: Sequence[Optional[str]]) -> Dict[str, float]:
    """Accuracy, micro- and macro-F1 and Matthews correlation of ``predicted`` against ``gold`` (scikit-learn).

    A prediction of no intent (None) is a miss that adds no false positive: micro-F1 equals accuracy
    only when every example gets an intent. Macro-F1 averages over the gold labels and the predicted
    ones. MCC is the multi-class generalisation (Gorodkin 2004); for two labels it is the usual
    Matthews correlation, the CoLA metric.
    """
    from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

    if len(gold) != len(predicted):
        raise ValueError(f"{len(gold)} gold labels but {len(predicted)} predictions")
    if not gold:
        raise ValueError("no examples to score")
    answered = [p if p is not None else NO_INTENT for p in predicted]
    labels = sorted(set(gold) | {p for p in predicted if p is not None})  # NO_INTENT is never a class of its own
    return {
        "examples": len(gold),
        "accuracy": float(accuracy_score(gold, answered)),
        "micro_f1": float(f1_score(gold, answered, labels=labels, average="micro", zero_division=0)),
        "macro_f1": float(f1_score(gold, answered, labels=labels, average="macro", zero_division=0)),
        "mcc": float(matthews_corrcoef(gold, answered)),
    }


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


def measure_latency(model, sentences: Sequence[str], single_calls: int, batches: int) -> Dict[str, float]:
    """Median wall time of one sentence (tokenization included) and per example in batches of 256."""
    model.logits(list(sentences[:2]))  # trace the graph before timing
    model.logits(list(sentences[:1]))
    single = []
    for i in range(single_calls):
        text = sentences[i % len(sentences)]
        start = time.perf_counter()
        model.logits([text])
        single.append((time.perf_counter() - start) * 1000)
    batch = [sentences[i % len(sentences)] for i in range(256)]
    per_example = []
    for _ in range(batches):
        start = time.perf_counter()
        model.logits(batch, batch_size=256)
        per_example.append((time.perf_counter() - start) * 1000 / 256)
    return {
        "batch_1": statistics.median(single),
        "batch_1_p90": float(np.percentile(single, 90)),
        "batch_256_per_example": statistics.median(per_example),
    }


def score_models(models: Dict[str, object], splits: Dict[str, Tuple[List[str], List[str]]]):
    """Scores per model and split, and the predictions (for agreement and confusion plots)."""
    scores: Dict[str, Dict[str, dict]] = {name: {} for name in models}
    predictions: Dict[str, Dict[str, List[str]]] = {name: {} for name in models}
    for split, (texts, gold) in splits.items():
        for name, model in models.items():
            predicted = [model.labels[i] for i in model.logits(texts).argmax(axis=1)]
            predictions[name][split] = predicted
            scores[name][split] = classification_scores(gold, predicted)
    return scores, predictions


def agreement(a: Sequence[str], b: Sequence[str]) -> float:
    return float(np.mean([x == y for x, y in zip(a, b)])) if a else 0.0


# --- plots ---------------------------------------------------------------------------------------


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_confusion(gold: Sequence[str], predicted: Sequence[str], labels: Sequence[str], title: str, path: Path) -> None:
    plt = _pyplot()
    index = {label: i for i, label in enumerate(labels)}
    matrix = np.zeros((len(labels), len(labels)))
    for g, p in zip(gold, predicted):
        if g in index and p in index:
            matrix[index[g], index[p]] += 1
    rows = matrix.sum(axis=1, keepdims=True)
    normalised = np.divide(matrix, rows, out=np.zeros_like(matrix), where=rows > 0)
    size = max(5.0, min(0.22 * len(labels) + 2, 18.0))
    fig, ax = plt.subplots(figsize=(size + 1, size))
    image = ax.imshow(normalised, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(labels)))
    ax.set_yticks(range(len(labels)))
    font = 8 if len(labels) <= 20 else 5
    ax.set_xticklabels(labels, rotation=90, fontsize=font)
    ax.set_yticklabels(labels, fontsize=font)
    ax.set_xlabel("predicted")
    ax.set_ylabel("gold")
    ax.set_title(title)
    fig.colorbar(image, ax=ax, fraction=0.046, label="share of the gold row")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_training(epochs: List[dict], metric: str, path: Path) -> None:
    plt = _pyplot()
    fig, left = plt.subplots(figsize=(7, 4))
    x = [e["epoch"] for e in epochs]
    left.plot(x, [e["loss"] for e in epochs], "o-", color="tab:red", label="train loss")
    left.set_xlabel("epoch")
    left.set_ylabel("train loss", color="tab:red")
    right = left.twinx()
    right.plot(x, [e["dev"][metric] for e in epochs], "s-", color="tab:blue", label=f"dev {metric}")
    right.set_ylabel(f"dev {metric}", color="tab:blue")
    left.set_title("student training")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_agreement(scores: Dict[str, Dict[str, dict]], agreements: Dict[str, float], metric: str, path: Path) -> None:
    plt = _pyplot()
    splits = list(agreements)
    width = 0.27
    fig, ax = plt.subplots(figsize=(max(5, 2.5 * len(splits)), 4))
    positions = np.arange(len(splits))
    ax.bar(positions - width, [scores["teacher"][s][metric] for s in splits], width, label=f"teacher {metric}")
    ax.bar(positions, [scores["student"][s][metric] for s in splits], width, label=f"student {metric}")
    ax.bar(positions + width, [agreements[s] for s in splits], width, label="student = teacher")
    ax.set_xticks(positions)
    ax.set_xticklabels(splits)
    ax.set_ylim(0, 1.05)
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title("teacher-student agreement")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --- report --------------------------------------------------------------------------------------


def _pct(value: Optional[float]) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def _confidence_section(teacher: dict, student: dict) -> List[str]:
    """The report's table of calibration and out-of-scope scores (empty for metrics written before them)."""
    blocks = [(name, block["confidence"]) for name, block in (("teacher", teacher), ("student", student)) if block.get("confidence")]
    if not blocks:
        return []
    split = blocks[0][1]["split"]
    lines = ["## Confidence: can a fallback threshold trust it?", "",
             f"Top confidence on {split} (in scope) and on the out-of-scope file, if one was given. The threshold keeps "
             f"95% of in-scope answers on {split} itself (an oracle: pick yours on held-out data); below it an answer "
             "falls back, and counts as wrong in the in-scope accuracy at the threshold. In brackets after the ECE: "
             f"the 95th percentile of the ECE a perfectly calibrated model with the same confidences shows on "
             f"{blocks[0][1]['in_scope_examples']} messages; an ECE below it is within sampling noise.", "",
             "| model | ECE (calibrated model's) | mean confidence | accuracy | threshold | in-scope accuracy at threshold | out-of-scope AUROC | "
             "out of scope caught | mean out-of-scope confidence |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, c in blocks:
        auroc = "-" if c["auroc"] is None else f"{c['auroc']:.3f}"
        out_mean = "-" if c["out_of_scope_mean_confidence"] is None else f"{c['out_of_scope_mean_confidence']:.2f}"
        floor = f" ({c['ece_if_calibrated']['p95']:.3f})" if c.get("ece_if_calibrated") else ""
        lines.append(f"| {name} | {c['ece']:.3f}{floor} | {c['mean_confidence']:.2f} | {_pct(c['accuracy'])} | {c['threshold']:.2f} | "
                     f"{_pct(c['in_scope_accuracy_at_threshold'])} | {auroc} | {_pct(c['out_of_scope_recall'])} "
                     f"({c['out_of_scope_examples']}) | {out_mean} |")
    lines.append("")
    picked = [(name, c["dev_threshold"]) for name, c in blocks if c.get("dev_threshold")]
    if picked:
        lines += ["The threshold to set (`FallbackClassifier`'s `threshold`), picked on held-out messages: it keeps 95% "
                  "of the answers on dev, every answer on training examples kept out of the transfer set (the teacher "
                  f"trained on them, so they are easier than new messages). What it does on {split}:", "",
                  f"| model | threshold | picked on | in-scope answers kept on {split} | in-scope accuracy at threshold | "
                  "out of scope caught |", "|---|---|---|---|---|---|"]
        lines += [f"| {name} | {d['threshold']:.2f} | {d['split']} ({d['messages']}) | {_pct(d['in_scope_kept'])} | "
                  f"{_pct(d['in_scope_accuracy_at_threshold'])} | {_pct(d['out_of_scope_recall'])} |" for name, d in picked]
        if len(picked) < len(blocks):
            lines += ["", "No dev split: the teacher trained on every other labelled message, so none is held out for it."]
    else:
        lines.append("No dev split, and no training examples kept out of the transfer set "
                     "(`transfer_set.threshold_holdout`): no threshold could be picked on held-out messages (the one "
                     f"above is picked on {split} itself). Keep some labelled messages apart and pick it there.")
    return lines + [""]


def write_report(metrics: dict, path: Path, plots: Dict[str, str]) -> None:
    from rasa_kd.io_utils import write_text

    teacher, student = metrics["teacher"], metrics["student"]
    splits = list(teacher["scores"])
    lines = [
        f"# Distillation report: {student['kind']} student",
        "",
        f"Written by rasa-kd {metrics['versions'].get('rasa-kd', '?')} on {metrics['date']}; the figures are in `metrics.json`.",
        "",
        "## Scores",
        "",
        "| model | split | accuracy | micro-F1 | macro-F1 | MCC | agreement with teacher |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, block in (("teacher", teacher), ("student", student)):
        for split in splits:
            s = block["scores"][split]
            agree = _pct(student["agreement_with_teacher"][split]) if name == "student" else "-"
            lines.append(f"| {name} | {split} ({s['examples']}) | {_pct(s['accuracy'])} | {_pct(s['micro_f1'])} | "
                         f"{_pct(s['macro_f1'])} | {_pct(s['mcc'])} | {agree} |")
    lines += [
        "",
        "## Size and speed (measured in the same run)",
        "",
        "| model | parameters | size on disk | latency, batch 1 | per example, batch 256 |",
        "|---|---|---|---|---|",
    ]
    for name, block in (("teacher", teacher), ("student", student)):
        latency = block["latency_ms"]
        lines.append(f"| {name} | {block['params']:,} | {block['size_bytes'] / 1e6:.1f} MB | "
                     f"{latency['batch_1']:.2f} ms | {latency['batch_256_per_example']:.3f} ms |")
    ratios = metrics["ratios"]
    lines += [
        "",
        f"The student is {ratios['params']:.1f}x smaller in parameters, {ratios['size_bytes']:.1f}x on disk, "
        f"{ratios['latency_batch_1']:.1f}x faster at batch 1 and {ratios['latency_batch_256']:.1f}x at batch 256.",
        "",
    ]
    lines += _confidence_section(teacher, student)
    lines += [
        "## Transfer set",
        "",
    ]
    ts = metrics["transfer_set"]
    lines.append(f"{ts['size']} sentences (asked for {ts['target_size']}): " +
                 ", ".join(f"{count} {source}" for source, count in ts["by_source"].items() if count) + ".")
    lines.append(f"Dropped because they occur in dev or test: {ts['dropped_dev_test'] or 'none'}; "
                 f"duplicates dropped: {ts['dropped_duplicates'] or 'none'}.")
    lines += ["", "## Stages", "", "| stage | wall time |", "|---|---|"]
    for stage, info in metrics["stages"].items():
        lines.append(f"| {stage} | {info['seconds']:.0f} s |")
    lines += ["", "## Plots", ""]
    for title, file in plots.items():
        lines += [f"### {title}", "", f"![{title}]({file})", ""]
    write_text(path, "\n".join(lines) + "\n")

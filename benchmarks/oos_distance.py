"""Distance-based out-of-scope scores on the models' features, against the top softmax: the Mahalanobis
distance to the nearest intent (class means and one shared covariance, Ledoit-Wolf shrunk, fitted on
the run's training sentences; Lee et al. 2018, Podolskiy et al. 2021) and the relative Mahalanobis
distance (minus the distance to one Gaussian over all training sentences; Ren et al. 2021).
Features: the teacher's pooled [CLS], the tiny-BERT's pooled [CLS], the BiLSTM's ReLU layer. Inference
only, on finished runs of benchmarks/fewshot.py.

    .venv/bin/python benchmarks/oos_distance.py --tag oe-holdout

AUROC in vs out and out-of-scope caught at the threshold keeping 95% of in-scope test messages (an
oracle threshold, to compare scores). Writes benchmarks/results/oos_distance-TAG.json.
"""
from pathlib import Path

import numpy as np
import yaml

from oos_scores import arguments, load_run, print_row, separation, write_rows  # benchmarks/ is on the path of a script run from it

ROOT = Path(__file__).resolve().parents[1]


def _batches(ids, size=32):
    from rasa_kd.models import bert

    for batch in bert.length_grouped_batches([len(x) for x in ids], size):
        yield batch, bert.pad([ids[i] for i in batch], 0)


def bilstm_features(student, texts) -> np.ndarray:
    """The BiLSTM's ReLU layer (the input of its logits layer), by the NumPy runtime's own arithmetic."""
    runtime, ids = student._numpy, student.encode(texts)
    out = np.zeros((len(ids), runtime.dense_w.shape[1]), dtype=np.float32)
    for batch, (input_ids, mask) in _batches(ids):
        out[batch] = runtime.features(input_ids, mask)
    return out


def tinybert_features(student, texts) -> np.ndarray:
    """The tiny-BERT's pooled [CLS]: the NumPy runtime with an identity classifier."""
    runtime, ids = student._numpy, student.encode(texts)
    hidden = runtime.pooler[0].shape[0]
    saved, runtime.classifier = runtime.classifier, (np.eye(hidden, dtype=np.float32), np.zeros((hidden, 1), np.float32))
    try:
        out = np.zeros((len(ids), hidden), dtype=np.float32)
        for batch, (input_ids, mask) in _batches(ids):
            out[batch] = runtime(input_ids, mask)
    finally:
        runtime.classifier = saved
    return out


def teacher_features(teacher, texts) -> np.ndarray:
    from rasa_kd.models import bert

    ids = teacher.encode(texts)
    out = np.zeros((len(ids), teacher.model.config.hidden_size), dtype=np.float32)
    for batch in bert.length_grouped_batches([len(x) for x in ids], 64):
        input_ids, mask = bert.pad([ids[i] for i in batch], teacher.tokenizer.pad_token_id)
        out[batch] = teacher.model.bert(input_ids=input_ids, attention_mask=mask, training=False).pooler_output.numpy()
    return out


def distance_scores(train: np.ndarray, labels: np.ndarray, test: np.ndarray) -> dict:
    """Higher = more in scope: minus the Mahalanobis distance to the nearest class mean, and the relative one."""
    from sklearn.covariance import LedoitWolf

    classes = np.unique(labels)
    means = np.stack([train[labels == c].mean(axis=0) for c in classes])
    shared = LedoitWolf().fit(train - means[np.searchsorted(classes, labels)])
    precision = shared.precision_
    diff = test[:, None, :] - means[None]  # [n, classes, d]
    per_class = np.einsum("ncd,de,nce->nc", diff, precision, diff)
    background = LedoitWolf().fit(train)
    centred = test - background.location_
    to_all = np.einsum("nd,de,ne->n", centred, background.precision_, centred)
    return {"mahalanobis": -per_class.min(axis=1), "relative mahalanobis": -(per_class - to_all[:, None]).min(axis=1)}


def main() -> None:
    args = arguments(__doc__)
    from scipy.special import softmax

    from rasa_kd.data.nlu_yaml import load_intent_examples

    features_of = {"teacher": teacher_features, "bilstm": bilstm_features, "tinybert": tinybert_features}
    rows = []
    for name in args.sets:
        run, examples, outside, models = load_run(name, args.tag)
        config = yaml.safe_load((run / "bilstm" / "config.yml").read_text(encoding="utf-8"))
        train = load_intent_examples(Path(config["data"]["train"]))
        train_texts = [t for t, _ in train]
        inside = [t for t, _ in examples]
        for model_name, model in models.items():
            features = features_of[model_name]
            labels = np.array([model.labels.index(i) for _, i in train])
            f_train, f_in, f_out = features(model, train_texts), features(model, inside), features(model, outside)
            a, b = distance_scores(f_train, labels, f_in), distance_scores(f_train, labels, f_out)
            a["top softmax"] = softmax(model.logits(inside), axis=1).max(axis=1)
            b["top softmax"] = softmax(model.logits(outside), axis=1).max(axis=1)
            row = {"set": name, "model": model_name, **{score: separation(a[score], b[score]) for score in a}}
            rows.append(row)
            print_row(row, a)
    write_rows("oos_distance", args.tag, rows)


if __name__ == "__main__":
    main()

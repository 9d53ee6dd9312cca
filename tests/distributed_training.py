"""Train the tiny teacher and a tiny student under a strategy and write their loss curves and predictions
(run by tests/test_distribute.py in its own processes: logical devices and TF_CONFIG are per process).

    python tests/distributed_training.py local|multi_worker BERT_DIR TEACHER_DIR OUT.json
"""
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ["RASA_TELEMETRY_ENABLED"] = "false"
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def train(strategy, bert_dir: str, teacher_dir: str) -> dict:
    """The tiny teacher and a tiny dropout-free student trained under ``strategy`` (None: one device)."""
    import numpy as np

    from rasa_kd.distill import distribute
    from rasa_kd.distill.config import StudentTrainingSettings
    from rasa_kd.distill.student_training import train_student
    from rasa_kd.distill.teacher_training import fine_tune_teacher
    from rasa_kd.models.architectures import BiLSTMSettings
    from rasa_kd.models.student import new_student
    from rasa_kd.models.teacher import Teacher, TeacherSettings
    from tests.tiny_models import TEST_EXAMPLES, intent_pairs

    texts, intents = intent_pairs()
    tests = [t for examples in TEST_EXAMPLES.values() for t in examples]
    # Batches of 8 over 54 sentences (36 + 18 outliers) and of 7 over 36: the last batch of each epoch is uneven.
    settings = TeacherSettings(model=bert_dir, epochs=4, batch_size=8, learning_rate=5e-3, warmup_ratio=0.1, max_seq_length=16,
                               train_embeddings=True)
    teacher, teacher_record = fine_tune_teacher(texts, intents, settings, progress=False, strategy=strategy)

    fixed = Teacher.load(Path(teacher_dir))  # the student learns from the same teacher under every strategy
    with distribute.scope(strategy):
        student, ids = new_student("bilstm", BiLSTMSettings(hidden_units=8, dense_units=8, dropout=0.0, max_seq_length=16),
                                   fixed, texts, seed=1)
    index = {label: i for i, label in enumerate(student.labels)}
    gold = np.array([index[i] for i in intents], dtype=np.int32)
    training = StudentTrainingSettings(epochs=3, batch_size=7, learning_rate=5e-3)
    record = train_student(student, student.vocab.map(ids), fixed.logits(texts), gold, student.encode(texts), intents,
                           training, None, progress=False, strategy=strategy)
    return {
        "replicas": strategy.num_replicas_in_sync if strategy is not None else 1,
        "teacher_losses": [e.loss for e in teacher_record.epochs],
        "teacher_predictions": teacher.logits(tests).argmax(axis=1).tolist(),
        "student_losses": [e.loss for e in record.epochs],
        "student_logits": student.logits(tests).tolist(),
    }


def main(mode: str, bert_dir: str, teacher_dir: str, out: str) -> None:
    """``mode`` local: one device, then MirroredStrategy over 2 logical CPUs; multi_worker: this worker's part."""
    from rasa_kd.distill import distribute

    if mode == "local":
        strategy = distribute.make_strategy("mirrored", cpu_replicas=2)  # before TensorFlow starts; one_device ignores it
        results = {"one_device": train(None, bert_dir, teacher_dir), "mirrored": train(strategy, bert_dir, teacher_dir)}
    else:
        strategy = distribute.make_strategy("multi_worker")
        results = {"multi_worker": train(strategy, bert_dir, teacher_dir)}
    if distribute.is_chief(strategy):
        Path(out).write_text(json.dumps(results))


if __name__ == "__main__":
    main(*sys.argv[1:])

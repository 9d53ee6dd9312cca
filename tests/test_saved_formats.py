"""Folders saved by an earlier rasa-kd load and predict as they did, and serving needs no trainer."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from rasa_kd.models.student import StudentModel
from rasa_kd.models.teacher import Teacher

# Written by rasa-kd 0.1.0 as it was at commit c2f9375 (before the models package), with the logits
# that version computed for a few sentences.
SAVED = Path(__file__).resolve().parent / "fixtures" / "saved-0.1.0"
EXPECTED = json.loads((SAVED / "logits.json").read_text())


@pytest.mark.parametrize("name", ["bilstm", "tinybert"])
def test_a_student_saved_before_predicts_the_same(name):
    student = StudentModel.load(SAVED / name)
    np.testing.assert_allclose(student.logits(EXPECTED["texts"]), np.array(EXPECTED[name]), atol=1e-5)
    # One message at a time goes through the NumPy runtime: the same answers.
    single = np.concatenate([student.logits([text]) for text in EXPECTED["texts"]])
    np.testing.assert_allclose(single, np.array(EXPECTED[name]), atol=1e-4)


def test_a_teacher_saved_before_predicts_the_same():
    teacher = Teacher.load(SAVED / "teacher")
    np.testing.assert_allclose(teacher.logits(EXPECTED["texts"]), np.array(EXPECTED["teacher"]), atol=1e-5)


def test_loading_and_serving_a_student_imports_nothing_of_the_trainer():
    script = (f"import sys; from rasa_kd.models.student import StudentModel; "
              f"StudentModel.load({str(SAVED / 'bilstm')!r}).logits(['hello friend']); "
              "print(sorted(m for m in sys.modules if m.startswith(('rasa_kd.distill', 'rasa_kd.components', 'rasa.'))))")
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[]"

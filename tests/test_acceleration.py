"""GPU settings that run on CPUs too: mixed precision and XLA for the teacher and the tiny-BERT (off by
default, the CPU path unchanged), and a BiLSTM built so that Keras picks cuDNN's fused kernel on a GPU."""
import numpy as np
import pytest

from rasa_kd.distill import pipeline
from rasa_kd.distill.distribute import Acceleration
from rasa_kd.distill.teacher_training import fine_tune_teacher
from rasa_kd.models.teacher import TeacherSettings
from tests.tiny_models import intent_pairs, tiny_distill_config

FAST = dict(epochs=2, batch_size=8, learning_rate=5e-3, max_seq_length=16, outliers=0.0, train_embeddings=True)


def test_mixed_precision_teacher_computes_in_float16_and_keeps_float32_weights(tiny_bert_dir):
    import tensorflow as tf

    texts, intents = intent_pairs()
    teacher, record = fine_tune_teacher(texts, intents, TeacherSettings(model=str(tiny_bert_dir), **FAST), progress=False,
                                        acceleration=Acceleration(mixed_precision=True))
    dense = teacher.model.classifier
    assert dense.compute_dtype == "float16" and dense.variable_dtype == "float32"
    assert all(v.dtype == tf.float32 for v in teacher.model.trainable_variables)
    assert all(np.isfinite(e.loss) for e in record.epochs) and record.steps > 0
    assert teacher.logits(["hello"]).dtype == np.float32
    # Only the models built for the run take the policy: what is built afterwards is float32 again.
    assert tf.keras.mixed_precision.global_policy().name == "float32"


@pytest.mark.slow  # two teacher trainings: the compiled step against the plain one
def test_xla_step_trains_as_the_plain_one(tiny_bert_dir):
    texts, intents = intent_pairs()
    settings = TeacherSettings(model=str(tiny_bert_dir), **FAST)
    _, plain = fine_tune_teacher(texts, intents, settings, progress=False)
    _, compiled = fine_tune_teacher(texts, intents, settings, progress=False, acceleration=Acceleration(xla=True))
    # Within 1%: the compiled step fuses and reorders float work, and its dropout masks may be drawn differently.
    np.testing.assert_allclose([e.loss for e in compiled.epochs], [e.loss for e in plain.epochs], rtol=1e-2)


@pytest.mark.slow  # two pipeline runs
@pytest.mark.parametrize("kind", ["bilstm", "tinybert"])
def test_acceleration_settings_reach_the_student(tmp_path, tiny_data, tiny_bert_dir, bilstm_run, kind):
    """Mixed precision and XLA apply to a tiny-BERT student; a BiLSTM student stays float32."""
    config = tiny_distill_config(tiny_data, tiny_bert_dir, **{
        "compute.mixed_precision": True, "compute.xla": True, "student.type": kind, "student.training.epochs": 2,
        "teacher.path": str(bilstm_run[0] / "teacher")})
    student = pipeline.Distillation(config, tmp_path / "run", progress=False).run_stages(["teacher", "augment", "label", "student"])
    dtypes = {layer.compute_dtype for layer in student.network.submodules if hasattr(layer, "compute_dtype")}
    assert ("float16" in dtypes) == (kind == "tinybert")
    assert np.isfinite(student.logits(["hello there"])).all()


def test_the_bilstm_can_use_the_fused_cudnn_kernel(tiny_bert_dir):
    from rasa_kd.distill.config import StudentStageSettings
    from rasa_kd.models.networks import build_bilstm

    settings = StudentStageSettings().bilstm.for_examples(161)  # the defaults as a small bot resolves them
    network = build_bilstm(settings, 50, 3, None, 8)
    bidirectional = [layer for layer in network.layers if type(layer).__name__ == "Bidirectional"]
    assert len(bidirectional) == settings.layers
    lstms = [lstm for layer in bidirectional for lstm in (layer.forward_layer, layer.backward_layer)]
    assert {type(lstm).__name__ for lstm in lstms} == {"LSTM"}
    # Keras' own test for the cuDNN kernel (tanh, sigmoid, no recurrent dropout, not unrolled, with bias);
    # the masks are right-padded (rasa_kd.models.bert.pad), the kernel's other condition.
    assert all(layer._could_use_gpu_kernel for layer in lstms)


def test_acceleration_is_off_by_default():
    from rasa_kd.distill.config import load_config

    compute = load_config(None, {}).compute
    assert (compute.mixed_precision, compute.xla) == (False, False)
    assert Acceleration().optimizer("adam") == "adam" and Acceleration().jit_compile(None) is None

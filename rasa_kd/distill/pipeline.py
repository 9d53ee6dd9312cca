"""The distillation stages (teacher, augment, label, student, evaluate) and `distill`, which runs
them all. Every stage reads and writes one output folder:

    OUT/config.yml            the resolved config (every setting)
    OUT/teacher/              the fine-tuned (or reused) teacher
    OUT/transfer_set.jsonl    the transfer set; OUT/transfer_set.json its statistics
    OUT/cache/logits-KEY/     the teacher's logits, shard by shard (resumable)
    OUT/checkpoints/          model-best/, model-last/, tensorboard/ of the student's training
    OUT/student/              the student the Rasa components load
    OUT/metrics.json, OUT/report.md, OUT/plots/
    OUT/stages.json           wall time and input fingerprint of each stage

A stage whose inputs did not change since it last finished is reused, not redone (``force`` redoes it).
"""
import dataclasses
import datetime
import logging
import shutil
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np

from rasa_kd.distill.config import DistillConfig, save_config
from rasa_kd.errors import ConfigError, DataError, ModelLoadError
from rasa_kd.io_utils import atomic_directory, read_json, sha256_file, write_json
from rasa_kd.provenance import fingerprint, package_versions

logger = logging.getLogger(__name__)

STAGES = ("teacher", "augment", "label", "student", "evaluate")


@dataclasses.dataclass
class RunFolder:
    root: Path

    def __post_init__(self):
        self.root = Path(self.root)

    config = property(lambda self: self.root / "config.yml")
    teacher = property(lambda self: self.root / "teacher")
    transfer_set = property(lambda self: self.root / "transfer_set.jsonl")
    transfer_stats = property(lambda self: self.root / "transfer_set.json")
    labelling = property(lambda self: self.root / "labelling.json")
    checkpoints = property(lambda self: self.root / "checkpoints")
    student = property(lambda self: self.root / "student")
    training = property(lambda self: self.root / "student_training.json")
    metrics = property(lambda self: self.root / "metrics.json")
    report = property(lambda self: self.root / "report.md")
    plots = property(lambda self: self.root / "plots")
    stages = property(lambda self: self.root / "stages.json")

    def cache(self, config: DistillConfig) -> Path:
        return Path(config.labelling.cache_dir) if config.labelling.cache_dir else self.root / "cache"

    def stage_records(self) -> dict:
        return read_json(self.stages) if self.stages.is_file() else {}

    def record_stage(self, stage: str, seconds: float, inputs: str, **extra) -> None:
        records = self.stage_records()
        records[stage] = {"seconds": round(seconds, 2), "inputs": inputs,
                          "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"), **extra}
        write_json(self.stages, records)

    def is_current(self, stage: str, inputs: str, output: Path) -> bool:
        return output.exists() and self.stage_records().get(stage, {}).get("inputs") == inputs


# --- data ----------------------------------------------------------------------------------------


def load_splits(config: DistillConfig) -> Dict[str, Tuple[List[str], List[str]]]:
    """(texts, intents) of train, dev and (if given) test."""
    from rasa_kd.data.nlu_yaml import load_intent_examples

    data = config.data
    if not data.train:
        raise ConfigError("'data.train' is not set: pass --train FILE or set it in the config file")
    splits = {}
    for split in ("train", "dev", "test"):
        path = getattr(data, split)
        if path:
            pairs = load_intent_examples(Path(path), data.retrieval_intents)
            splits[split] = ([t for t, _ in pairs], [i for _, i in pairs])
    return splits


def data_fingerprint(config: DistillConfig) -> List[str]:
    return [sha256_file(p) if Path(p).is_file() else str(p) for p in (config.data.train, config.data.dev, config.data.test) if p]


# --- teacher -------------------------------------------------------------------------------------


def _teacher_inputs(config: DistillConfig) -> str:
    settings = dataclasses.asdict(config.teacher)
    source = settings.pop("path")
    if source:
        source_print = sha256_file(source) if Path(source).is_file() else str(Path(source).resolve())
        return fingerprint(["reuse", source_print])
    return fingerprint(["fine-tune", settings, data_fingerprint(config)[:1], config.data.retrieval_intents])


def teacher_stage(config: DistillConfig, run: RunFolder, progress: bool = True, force: bool = False):
    """Fine-tune the teacher on data.train, or copy the one named by teacher.path."""
    from rasa_kd.teacher import Teacher, TeacherSettings, fine_tune_teacher

    inputs = _teacher_inputs(config)
    if not force and run.is_current("teacher", inputs, run.teacher):
        logger.info("teacher: reusing %s", run.teacher)
        return Teacher.load(run.teacher)
    started = time.perf_counter()
    if config.teacher.path:
        _copy_existing_teacher(Path(config.teacher.path), run.teacher)
        teacher = Teacher.load(run.teacher)
    else:
        splits = load_splits(config)
        settings = TeacherSettings(**{f.name: getattr(config.teacher, f.name) for f in dataclasses.fields(TeacherSettings)})
        teacher, _ = fine_tune_teacher(*splits["train"], settings, dev=splits.get("dev"), progress=progress)
        teacher.save(run.teacher, overwrite=True, extra={"data": {"train": config.data.train, "dev": config.data.dev}})
    run.record_stage("teacher", time.perf_counter() - started, inputs, fingerprint=teacher.fingerprint)
    return teacher


def _copy_existing_teacher(source: Path, target: Path) -> None:
    """Copy a saved teacher folder, or the teacher inside a Rasa model archive, byte for byte."""
    from rasa_kd.teacher import RECORD_FILE

    if source.is_dir():
        if not (source / RECORD_FILE).is_file():
            raise ModelLoadError(f"'teacher.path' {source} has no {RECORD_FILE}: not a teacher saved by rasa-kd")
        with atomic_directory(target, overwrite=True) as tmp:
            shutil.copytree(source, tmp, dirs_exist_ok=True)
        return
    if not source.is_file():
        raise ModelLoadError(f"'teacher.path' {source} does not exist")
    try:
        archive = tarfile.open(source)
    except tarfile.TarError as error:
        raise ModelLoadError(f"'teacher.path' {source} is neither a teacher folder nor a Rasa model archive: {error}") from None
    with archive, tempfile.TemporaryDirectory() as scratch:
        records = [m for m in archive.getmembers() if m.name.endswith(f"/teacher/{RECORD_FILE}") and m.isfile()]
        if not records:
            raise ModelLoadError(f"Rasa model {source} contains no rasa_kd.BertIntentClassifier teacher")
        if len(records) > 1:
            raise ModelLoadError(f"Rasa model {source} contains {len(records)} teachers; extract the one you want")
        prefix = records[0].name[: -len(RECORD_FILE)]
        members = [m for m in archive.getmembers() if m.name.startswith(prefix) and m.isfile() and ".." not in m.name]
        archive.extractall(scratch, members=members)
        with atomic_directory(target, overwrite=True) as tmp:
            shutil.copytree(Path(scratch) / prefix, tmp, dirs_exist_ok=True)


def load_teacher(run: RunFolder):
    from rasa_kd.teacher import Teacher

    if not run.teacher.is_dir():
        raise ModelLoadError(f"no teacher in {run.teacher}; run `rasa-kd teacher --output {run.root}` first")
    return Teacher.load(run.teacher)


# --- transfer set --------------------------------------------------------------------------------


def augment_stage(config: DistillConfig, run: RunFolder, progress: bool = True, force: bool = False):
    """Build the transfer set: training sentences + unlabelled file + rule / GPT-2 sentences."""
    from rasa_kd.distill.augment import RuleAugmenter, WordNeighbours
    from rasa_kd.distill.transfer_set import TransferSet, build_transfer_set

    teacher = load_teacher(run)
    ts_settings = config.transfer_set
    inputs = fingerprint([teacher.fingerprint, dataclasses.asdict(ts_settings), data_fingerprint(config), config.data.retrieval_intents])
    if not force and run.is_current("augment", inputs, run.transfer_set):
        logger.info("augment: reusing %s", run.transfer_set)
        return TransferSet.load(run.transfer_set)
    started = time.perf_counter()
    splits = load_splits(config)
    held_out = [text for split in ("dev", "test") if split in splits for text in splits[split][0]]
    rng = np.random.default_rng(ts_settings.random_seed)
    rules = None
    if "rules" in ts_settings.augmentation:
        vocab = teacher.tokenizer.get_vocab()
        embeddings = teacher.model.get_input_embeddings().weight.numpy()
        lowercase = bool(getattr(teacher.tokenizer, "do_lower_case", True))
        neighbours = WordNeighbours(vocab, embeddings, ts_settings.rules.neighbours, lowercase) if ts_settings.rules.replace_prob else None
        rules = RuleAugmenter(ts_settings.rules, neighbours, rng)
    gpt2 = _gpt2_generator(ts_settings, splits["train"][0], progress) if "gpt2" in ts_settings.augmentation else None
    transfer = build_transfer_set(*splits["train"], held_out, ts_settings, rule_augmenter=rules, gpt2_generator=gpt2)
    transfer.save(run.transfer_set)
    stats = {**transfer.stats, "augmentation": ts_settings.augmentation, "settings": dataclasses.asdict(ts_settings),
             "sha256": sha256_file(run.transfer_set)}
    write_json(run.transfer_stats, stats)
    run.record_stage("augment", time.perf_counter() - started, inputs)
    logger.info("transfer set: %d sentences (%s)", len(transfer), stats["by_source"])
    return transfer


def _gpt2_generator(settings, train_texts: List[str], progress: bool) -> Callable[[int], List[str]]:
    from rasa_kd.distill.gpt2 import fine_tune_gpt2, load_gpt2, sample_sentences

    lm, tokenizer = load_gpt2(settings.gpt2.model)
    if settings.gpt2.epochs:
        fine_tune_gpt2(lm, tokenizer, train_texts, settings.gpt2, settings.random_seed, progress)
    calls = iter(range(10**9))
    return lambda n: sample_sentences(lm, tokenizer, n, settings.gpt2, settings.random_seed + next(calls))


def load_transfer_set(run: RunFolder):
    from rasa_kd.distill.transfer_set import TransferSet

    if not run.transfer_set.is_file():
        raise DataError(f"no transfer set in {run.transfer_set}; run `rasa-kd augment --output {run.root}` first")
    return TransferSet.load(run.transfer_set)


# --- labelling -----------------------------------------------------------------------------------


def label_stage(config: DistillConfig, run: RunFolder, progress: bool = True, force: bool = False):
    """Teacher logits for every transfer sentence (cached; a killed run resumes)."""
    from rasa_kd.distill.labelling import label_transfer_set

    teacher = load_teacher(run)
    transfer = load_transfer_set(run)
    result = label_transfer_set(teacher, transfer.texts, run.cache(config), config.labelling.batch_size,
                                config.labelling.shard_size, progress)
    record = {"cache": str(result.cache_dir), "sentences": len(transfer), "shards": result.shards,
              "reused_shards": result.reused_shards, "seconds": round(result.seconds, 2),
              "teacher_fingerprint": teacher.fingerprint, "transfer_set_sha256": sha256_file(run.transfer_set)}
    write_json(run.labelling, record)
    if result.reused_shards < result.shards:
        run.record_stage("label", result.seconds, record["transfer_set_sha256"], reused_shards=result.reused_shards)
    return result


# --- student -------------------------------------------------------------------------------------


def student_stage(config: DistillConfig, run: RunFolder, progress: bool = True, force: bool = False):
    """Train the student on the labelled transfer set; write OUT/student."""
    from rasa_kd import bert
    from rasa_kd.distill.train_student import train_student
    from rasa_kd.student import StudentModel, StudentVocab, build_bilstm, build_tinybert

    import tensorflow as tf

    teacher = load_teacher(run)
    transfer = load_transfer_set(run)
    s = config.student
    arch_settings = s.bilstm if s.type == "bilstm" else s.tinybert
    inputs = fingerprint([teacher.fingerprint, sha256_file(run.transfer_set), s.type, dataclasses.asdict(arch_settings),
                          dataclasses.asdict(s.training), data_fingerprint(config)])
    if not force and run.is_current("student", inputs, run.student):
        logger.info("student: reusing %s", run.student)
        return StudentModel.load(run.student)
    logits = label_stage(config, run, progress).logits
    started = time.perf_counter()
    splits = load_splits(config)

    # A BiLSTM reads nothing from [CLS] and [SEP]; leaving them out saves two of its serial steps.
    special_tokens = s.type == "tinybert"
    teacher_ids = bert.encode(teacher.tokenizer, transfer.texts, arch_settings.max_seq_length, special_tokens)
    vocab = StudentVocab.from_teacher_ids(teacher_ids, teacher.tokenizer)
    tf.keras.utils.set_random_seed(s.training.random_seed)
    labels = teacher.labels
    if s.type == "bilstm":
        table = teacher.model.get_input_embeddings().weight.numpy()
        initial = table[vocab.teacher_ids] if arch_settings.embeddings == "teacher" else None
        network = build_bilstm(arch_settings, vocab.size, len(labels), initial, table.shape[1])
        architecture = {**dataclasses.asdict(arch_settings), "embedding_dim": int(table.shape[1]), "special_tokens": special_tokens}
    else:
        network = build_tinybert(arch_settings, vocab, labels, teacher, s.training.random_seed)
        architecture = {**dataclasses.asdict(arch_settings), "special_tokens": special_tokens}
        if arch_settings.init == "teacher" and not arch_settings.teacher_layers:
            from rasa_kd.student import default_teacher_layers

            architecture["teacher_layers"] = default_teacher_layers(arch_settings.layers, teacher.model.config.num_hidden_layers)
    record = {"teacher_fingerprint": teacher.fingerprint, "teacher_base_model": teacher.record.get("base_model"),
              "transfer_set_sha256": sha256_file(run.transfer_set), "training_settings": dataclasses.asdict(s.training)}
    student = StudentModel(s.type, network, teacher.tokenizer, vocab, labels, architecture, record)

    index = {label: i for i, label in enumerate(labels)}
    gold = np.array([index.get(i, -1) if i is not None else -1 for i in transfer.intents], dtype=np.int32)
    # Without a dev set, model-best is the epoch that fits the training sentences best.
    dev_texts, dev_gold = splits.get("dev") or splits["train"]
    unknown = sorted(set(dev_gold) - set(labels))
    if unknown:
        logger.warning("dev intents the teacher does not know (always scored wrong): %s", unknown)
    result = train_student(
        student, vocab.map(teacher_ids), logits, gold, student.encode(dev_texts), dev_gold, s.training,
        run.checkpoints, teacher=teacher, teacher_train_ids=teacher_ids, progress=progress,
        held_out_dev="dev" in splits,
    )
    student.save(run.student, overwrite=True, extra={"training": {
        "best_epoch": result.best_epoch, f"dev_{result.dev_metric}": result.best_score,
        "epochs_run": len(result.epochs), "stopped_early": result.stopped_early, "seconds": round(result.seconds, 1)}})
    write_json(run.training, result.as_dict())
    run.record_stage("student", time.perf_counter() - started, inputs, kind=s.type)
    return student


# --- evaluation ----------------------------------------------------------------------------------


def evaluate_stage(config: DistillConfig, run: RunFolder, progress: bool = True, force: bool = False) -> dict:
    """Scores, agreement, sizes and latencies of teacher and student; metrics.json, report.md, plots."""
    from rasa_kd.distill import evaluate as ev
    from rasa_kd.student import StudentModel

    started = time.perf_counter()
    teacher = load_teacher(run)
    if not run.student.is_dir():
        raise ModelLoadError(f"no student in {run.student}; run `rasa-kd student --output {run.root}` first")
    student = StudentModel.load(run.student)
    splits = {k: v for k, v in load_splits(config).items() if k != "train"} or {"train": load_splits(config)["train"]}
    models = {"teacher": teacher, "student": student}
    scores, predictions = ev.score_models(models, splits)
    agreements = {split: ev.agreement(predictions["teacher"][split], predictions["student"][split]) for split in splits}
    sentences = next(iter(splits.values()))[0]
    e = config.evaluation
    latency = {name: ev.measure_latency(model, sentences, e.latency_sentences, e.latency_batches) for name, model in models.items()}
    sizes = {"teacher": ev.folder_bytes(run.teacher), "student": ev.folder_bytes(run.student)}
    params = {"teacher": teacher.parameter_count(), "student": student.parameter_count()}
    stages = run.stage_records()
    metrics = {
        "date": datetime.date.today().isoformat(),
        "versions": package_versions(),
        "teacher": {"params": params["teacher"], "size_bytes": sizes["teacher"], "scores": scores["teacher"],
                    "latency_ms": latency["teacher"], "fingerprint": teacher.fingerprint},
        "student": {"kind": student.kind, "params": params["student"], "size_bytes": sizes["student"],
                    "scores": scores["student"], "latency_ms": latency["student"],
                    "agreement_with_teacher": agreements, "vocab_size": student.vocab.size,
                    "retention": {split: _ratio(scores["student"][split][config.student.training.dev_metric],
                                                scores["teacher"][split][config.student.training.dev_metric]) for split in splits}},
        "ratios": {
            "params": _ratio(params["teacher"], params["student"]),
            "size_bytes": _ratio(sizes["teacher"], sizes["student"]),
            "latency_batch_1": _ratio(latency["teacher"]["batch_1"], latency["student"]["batch_1"]),
            "latency_batch_256": _ratio(latency["teacher"]["batch_256_per_example"], latency["student"]["batch_256_per_example"]),
        },
        "transfer_set": read_json(run.transfer_stats) if run.transfer_stats.is_file() else {},
        "stages": {k: v for k, v in stages.items() if k in STAGES},
    }
    run.plots.mkdir(exist_ok=True)
    plots = {}
    last_split = list(splits)[-1]
    ev.plot_confusion(splits[last_split][1], predictions["student"][last_split], student.labels,
                      f"student on {last_split}", run.plots / "confusion_student.png")
    plots[f"Student confusion matrix ({last_split})"] = "plots/confusion_student.png"
    if run.training.is_file():
        ev.plot_training(read_json(run.training)["epochs"], config.student.training.dev_metric, run.plots / "training.png")
        plots["Training curves"] = "plots/training.png"
    ev.plot_agreement(scores, agreements, config.student.training.dev_metric, run.plots / "agreement.png")
    plots["Teacher-student agreement"] = "plots/agreement.png"
    run.record_stage("evaluate", time.perf_counter() - started, "")
    metrics["stages"] = {k: v for k, v in run.stage_records().items() if k in STAGES}
    write_json(run.metrics, metrics)
    ev.write_report(metrics, run.report, plots)
    return metrics


def _ratio(a: float, b: float) -> float:
    return float(a) / float(b) if b else float("inf")


STAGE_FUNCTIONS = {
    "teacher": teacher_stage,
    "augment": augment_stage,
    "label": label_stage,
    "student": student_stage,
    "evaluate": evaluate_stage,
}


def absolute_paths(config: DistillConfig) -> DistillConfig:
    """The config with its file paths made absolute, so OUT/config.yml works from any folder."""
    def resolve(value):
        return str(Path(value).expanduser().resolve()) if value else value

    ts = config.transfer_set
    return dataclasses.replace(
        config,
        data=dataclasses.replace(config.data, train=resolve(config.data.train), dev=resolve(config.data.dev), test=resolve(config.data.test)),
        teacher=dataclasses.replace(config.teacher, path=resolve(config.teacher.path), model=resolve(config.teacher.model)),
        transfer_set=dataclasses.replace(ts, unlabelled_file=resolve(ts.unlabelled_file),
                                         gpt2=dataclasses.replace(ts.gpt2, model=resolve(ts.gpt2.model))),
        labelling=dataclasses.replace(config.labelling, cache_dir=resolve(config.labelling.cache_dir)),
    )


def run_stage(stage: str, config: DistillConfig, output: Path, progress: bool = True, force: bool = False):
    """Run one stage after saving the resolved config in ``output``."""
    config = absolute_paths(config)
    run = RunFolder(output)
    run.root.mkdir(parents=True, exist_ok=True)
    save_config(config, run.config)
    return STAGE_FUNCTIONS[stage](config, run, progress=progress, force=force)


def distill(config: DistillConfig, output: Path, progress: bool = True, force: bool = False) -> dict:
    """All stages in order; returns the metrics."""
    result = None
    for stage in STAGES:
        logger.info("== stage %s", stage)
        result = run_stage(stage, config, output, progress, force)
    return result

"""A distillation run: teacher -> transfer set -> logits -> student -> evaluation.

:class:`Distillation` holds what each stage made in memory and hands it to the next stage, and
caches every result in one output folder so that a later run (or a single stage run from the
command line) resumes instead of starting again:

    OUT/config.yml            the resolved config (every setting)
    OUT/teacher/              the fine-tuned (or reused) teacher
    OUT/transfer_set.jsonl    the transfer set; OUT/transfer_set.json its statistics
    OUT/cache/logits-KEY/     the teacher's logits, shard by shard (resumable)
    OUT/checkpoints/          model-best/, model-last/, tensorboard/ of the student's training
    OUT/resume/teacher|student/  checkpoints of a training in progress (a rerun resumes; deleted when done)
    OUT/student/              the student the Rasa components load
    OUT/metrics.json, OUT/report.md, OUT/plots/
    OUT/stages.json           wall time and input fingerprint of each stage

A stage whose inputs did not change since it last finished is reused, not redone (``force`` redoes it).

Entry points: :func:`distil_examples` (texts and intents in, a student out; what
``rasa_kd.DistilledIntentClassifier`` calls), :func:`distill` (every stage of a config's data files,
then the evaluation; what ``rasa-kd distill`` calls) and :func:`run_stage` (one stage).
"""
import dataclasses
import datetime
import logging
import shutil
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from rasa_kd.distill import distribute
from rasa_kd.distill.config import DistillConfig, save_config
from rasa_kd.distill.lm import PACKAGED_MODEL
from rasa_kd.distill.transfer_set import threshold_holdout
from rasa_kd.errors import ConfigError, DataError, ModelLoadError
from rasa_kd.io_utils import atomic_directory, read_json, sha256_file, write_json
from rasa_kd.openblas import kernels_in_use
from rasa_kd.provenance import fingerprint, package_versions

logger = logging.getLogger(__name__)

STAGES = ("teacher", "augment", "label", "student", "evaluate")
HOLDOUT_SPLIT = "training examples kept out of the transfer set"
KEEP_HOLDOUT = 1.0  # share of the kept-back examples the student's threshold keeps (see _student_threshold)
# Rule-made copies of each held-out sentence the student's temperature is fitted on (at most CALIBRATION_MAX):
# a small bot keeps back 16-160 examples, too few on their own to fit a temperature on.
CALIBRATION_COPIES, CALIBRATION_MAX = 20, 4000
# Teacher settings added after runs were made, with the value that trains as before them: left out of the
# teacher stage's fingerprint at that value, so those runs' teachers are still reused.
TEACHER_SETTINGS_ADDED = {"label_smoothing": 0.0}
Examples = Tuple[List[str], List[str]]  # (texts, intents)


def _rule_augmenter(teacher, rules, rng: np.random.Generator):
    """Tang et al.'s rules over the teacher's vocabulary (neighbour swaps from its embeddings when enabled)."""
    from rasa_kd.distill.augment import RuleAugmenter, WordNeighbours

    neighbours = None
    if rules.replace_prob:
        lowercase = bool(getattr(teacher.tokenizer, "do_lower_case", True))
        neighbours = WordNeighbours(teacher.tokenizer.get_vocab(), teacher.model.get_input_embeddings().weight.numpy(),
                                    rules.neighbours, lowercase)
    return RuleAugmenter(rules, neighbours, rng)


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
    resume = property(lambda self: self.root / "resume")
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


def load_splits(config: DistillConfig) -> Dict[str, Examples]:
    """(texts, intents) of train, dev and (if given) test, read from the config's files."""
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


class Distillation:
    """The stages of one run over one output folder; each stage's result is kept for the next.

    ``splits`` ({"train": (texts, intents), "dev": ..., "test": ...}) gives the data in memory;
    without it the data is read once from the config's files.
    """

    def __init__(self, config: DistillConfig, output: Path, splits: Optional[Dict[str, Examples]] = None,
                 progress: bool = True, force: bool = False, resumable: bool = True):
        self.config = absolute_paths(config)
        self.run = RunFolder(output)
        self.progress, self.force, self.resumable = progress, force, resumable
        compute = self.config.compute
        # Made first: a multi-worker strategy must exist before TensorFlow runs anything else in the process.
        self.strategy = distribute.make_strategy(compute.strategy, cpu_replicas=compute.cpu_replicas)
        # Of a cluster's workers only the chief writes the run's files; the others train along and return.
        self.chief = distribute.is_chief(self.strategy)
        self.acceleration = distribute.Acceleration(compute.mixed_precision, compute.xla)
        self._splits = {name: (list(texts), list(intents)) for name, (texts, intents) in splits.items()} if splits else None
        self._in_scope: Optional[Dict[str, Examples]] = None
        self._teacher = self._transfer = self._labelling = self._student = self._file = None
        self._config_saved = False
        self.run.root.mkdir(parents=True, exist_ok=True)

    @property
    def _all_splits(self) -> Dict[str, Examples]:
        """Every example of every split, read once."""
        if self._splits is None:
            self._splits = load_splits(self.config)
        return self._splits

    @property
    def splits(self) -> Dict[str, Examples]:
        """train (every example), dev and test (in-scope examples only: see :meth:`held_out_out_of_scope`)."""
        if self._in_scope is None:
            name = self.config.teacher.out_of_scope_intent
            self._in_scope = {split: examples if split == "train" or name is None else _without(examples, name)
                              for split, examples in self._all_splits.items()}
        return self._in_scope

    def held_out_out_of_scope(self, split: str) -> List[str]:
        """The dev or test examples of ``teacher.out_of_scope_intent``: out-of-scope sentences to score."""
        name = self.config.teacher.out_of_scope_intent
        texts, intents = self._all_splits.get(split, ([], []))
        return [t for t, i in zip(texts, intents) if name is not None and i == name]

    def data_fingerprint(self) -> List[str]:
        """The data files' sha256 (or, for data given in memory, a fingerprint of the examples)."""
        data = self.config.data
        files = [p for p in (data.train, data.dev, data.test) if p]
        if files or self._splits is None:
            return [sha256_file(p) if Path(p).is_file() else str(p) for p in files]
        return [fingerprint([self._splits[name]]) for name in ("train", "dev", "test") if name in self._splits]

    # --- teacher ---------------------------------------------------------------------------------

    def teacher(self):
        """Fine-tune the teacher on the training data, or copy the one named by ``teacher.path``."""
        if self._teacher is None:
            self._teacher = self._teacher_stage()
        return self._teacher

    def _teacher_settings(self):
        """The teacher section as TeacherSettings (``path`` is the stage's, not the model's)."""
        from rasa_kd.models.teacher import TeacherSettings

        return TeacherSettings(**{f.name: getattr(self.config.teacher, f.name) for f in dataclasses.fields(TeacherSettings)})

    def _teacher_inputs(self) -> str:
        settings = dataclasses.asdict(self.config.teacher)
        source = settings.pop("path")
        for key, before in TEACHER_SETTINGS_ADDED.items():
            if settings[key] == before:
                settings.pop(key)
        if source:
            source_print = sha256_file(source) if Path(source).is_file() else str(Path(source).resolve())
            return fingerprint(["reuse", source_print])
        # The schedule as resolved for the data's size: a rerun after the rule changed fine-tunes again.
        resolved = self._teacher_settings().for_examples(len(self.splits["train"][0]))
        settings.update(epochs=resolved.epochs, batch_size=resolved.batch_size)
        file = settings.get("out_of_scope_file")
        return fingerprint(["fine-tune", settings, self.data_fingerprint()[:1], self.config.data.retrieval_intents,
                            sha256_file(file) if file and Path(file).is_file() else None])

    def _teacher_stage(self):
        from rasa_kd.distill.teacher_training import fine_tune_teacher
        from rasa_kd.models.teacher import Teacher

        inputs, run, config = self._teacher_inputs(), self.run, self.config
        if not self.force and run.is_current("teacher", inputs, run.teacher):
            logger.info("teacher: reusing %s", run.teacher)
            return Teacher.load(run.teacher)
        started = time.perf_counter()
        if config.teacher.path:
            _copy_existing_teacher(Path(config.teacher.path), run.teacher)
            teacher = Teacher.load(run.teacher)
        else:
            splits = self.splits
            teacher, _ = fine_tune_teacher(*splits["train"], self._teacher_settings(), dev=splits.get("dev"), progress=self.progress,
                                           strategy=self.strategy, acceleration=self.acceleration,
                                           **self._resume_arguments("teacher", inputs))
            if not self.chief:
                return teacher
            teacher.save(run.teacher, overwrite=True, extra={"data": {"train": config.data.train, "dev": config.data.dev}})
        run.record_stage("teacher", time.perf_counter() - started, inputs, fingerprint=teacher.fingerprint)
        shutil.rmtree(run.resume / "teacher", ignore_errors=True)
        return teacher

    def _resume_arguments(self, stage: str, inputs: str) -> dict:
        """Where ``stage``'s training checkpoints to resume from, and how often (``force`` starts afresh)."""
        if not self.resumable:
            return {}
        folder = self.run.resume / stage
        if self.force:
            shutil.rmtree(folder, ignore_errors=True)
        return {"resume_dir": folder, "checkpoint_seconds": 60.0 * self.config.compute.checkpoint_minutes, "resume_key": inputs}

    def saved_teacher(self):
        """The teacher of an earlier stage run, for stages run on their own."""
        from rasa_kd.models.teacher import Teacher

        if self._teacher is None:
            if not self.run.teacher.is_dir():
                raise ModelLoadError(f"no teacher in {self.run.teacher}; run `rasa-kd teacher --output {self.run.root}` first")
            self._teacher = Teacher.load(self.run.teacher)
        return self._teacher

    # --- transfer set ----------------------------------------------------------------------------

    def transfer_set(self):
        """Training sentences + unlabelled file + rule / GPT-2 sentences."""
        if self._transfer is None:
            self._transfer = self._augment_stage()
        return self._transfer

    def _augment_stage(self):
        from rasa_kd.distill.confidence import read_out_of_scope
        from rasa_kd.distill.outliers import STUDENT_WORDS, OutlierMaker
        from rasa_kd.distill.transfer_set import TransferSet, build_transfer_set, transfer_set_target

        teacher, run, config = self.saved_teacher(), self.run, self.config
        ts_settings = config.transfer_set
        # A set to be streamed is written in a shuffled order, so each shard is a sample of the whole set.
        shuffled = transfer_set_target(ts_settings, len(self.splits["train"][0])) >= config.compute.stream_from
        inputs = fingerprint([teacher.fingerprint, dataclasses.asdict(ts_settings), self.data_fingerprint(),
                              config.data.retrieval_intents] + (["shuffled"] if shuffled else []))
        if not self.force and run.is_current("augment", inputs, run.transfer_set):
            logger.info("augment: reusing %s", run.transfer_set)
            return TransferSet.load(run.transfer_set)
        started = time.perf_counter()
        splits = self.splits
        held_out = [text for split in ("dev", "test") if split in splits for text in splits[split][0]]
        # Sentences kept back to pick the student's threshold on: never in the transfer set, nor their augmentations.
        kept_back = set(self._threshold_holdout())
        train = ([t for i, t in enumerate(splits["train"][0]) if i not in kept_back],
                 [t for i, t in enumerate(splits["train"][1]) if i not in kept_back])
        held_out += [splits["train"][0][i] for i in sorted(kept_back)]
        rng = np.random.default_rng(ts_settings.random_seed)
        rules = None
        if "rules" in ts_settings.augmentation:
            rules = _rule_augmenter(teacher, ts_settings.rules, rng)
        gpt2 = _gpt2_generator(ts_settings, train[0], self.progress) if "gpt2" in ts_settings.augmentation else None
        lm_made = _lm_sentences(ts_settings, *train, self.progress) if ts_settings.lm.per_intent else []
        outliers = None
        if ts_settings.outliers:
            outliers = OutlierMaker(*train, teacher.tokenizer.get_vocab(), np.random.default_rng(ts_settings.random_seed + 1),
                                    words=STUDENT_WORDS)
        given = self.config.teacher.out_of_scope_file
        transfer = build_transfer_set(*train, held_out, ts_settings, rule_augmenter=rules, gpt2_generator=gpt2,
                                      outlier_maker=outliers, lm_sentences=lm_made,
                                      out_of_scope=read_out_of_scope(Path(given), "teacher.out_of_scope_file") if given else ())
        if shuffled:
            order = np.random.default_rng(ts_settings.random_seed + 2).permutation(len(transfer))
            transfer = transfer.reordered(order)
            transfer.stats["shuffled"] = True
        transfer.save(run.transfer_set)
        self._file = None
        stats = {**transfer.stats, "kept_back_for_threshold": len(kept_back), "augmentation": ts_settings.augmentation, "settings": dataclasses.asdict(ts_settings),
                 "sha256": sha256_file(run.transfer_set)}
        write_json(run.transfer_stats, stats)
        run.record_stage("augment", time.perf_counter() - started, inputs)
        logger.info("transfer set: %d sentences (%s)", len(transfer), stats["by_source"])
        return transfer

    def _threshold_holdout(self) -> List[int]:
        """Indices of the training examples kept out of the transfer set to pick the student's threshold on
        (none with a dev split, which serves instead; never an example of ``teacher.out_of_scope_intent``)."""
        if "dev" in self.splits:
            return []
        texts, intents = self.splits["train"]
        name = self.config.teacher.out_of_scope_intent
        in_scope = [i for i, intent in enumerate(intents) if intent != name]
        ts = self.config.transfer_set
        chosen = threshold_holdout([texts[i] for i in in_scope], [intents[i] for i in in_scope], ts.threshold_holdout, ts.random_seed)
        return [in_scope[i] for i in chosen]

    def saved_transfer_set(self):
        from rasa_kd.distill.transfer_set import TransferSet

        if self._transfer is None:
            if not self.run.transfer_set.is_file():
                raise DataError(f"no transfer set in {self.run.transfer_set}; run `rasa-kd augment --output {self.run.root}` first")
            self._transfer = TransferSet.load(self.run.transfer_set)
        return self._transfer

    def transfer_file(self):
        """The transfer set on disk, read on demand (:class:`rasa_kd.distill.streaming.TransferSetFile`)."""
        from rasa_kd.distill.streaming import TransferSetFile

        if self._file is None:
            self._file = TransferSetFile(self.run.transfer_set)
        return self._file

    @property
    def streamed(self) -> bool:
        """Whether the transfer set is labelled and trained on shard by shard from disk (``compute.stream_from``)."""
        return len(self.transfer_file()) >= self.config.compute.stream_from

    # --- labelling -------------------------------------------------------------------------------

    def labelling(self):
        """The teacher's logits for every transfer sentence (cached; a killed run resumes)."""
        if self._labelling is None:
            self._labelling = self._label_stage()
        return self._labelling

    def _label_stage(self):
        from rasa_kd.distill.labelling import label_transfer_set

        teacher, run, streamed = self.saved_teacher(), self.run, self.streamed
        texts = self.transfer_file().teacher_view() if streamed else self.saved_transfer_set().labelled_texts()
        settings = self.config.labelling
        result = label_transfer_set(teacher, texts, run.cache(self.config), settings.batch_size, settings.shard_size,
                                    self.progress, claim_timeout=60.0 * settings.claim_minutes, keep_logits=not streamed,
                                    devices=self._teacher_copies())
        record = {"cache": str(result.cache_dir), "sentences": len(texts), "shards": result.shards, "streamed": streamed,
                  "shards_by_device": result.shards_by_device,
                  "reused_shards": result.reused_shards, "computed_shards": result.computed_shards, "seconds": round(result.seconds, 2),
                  "teacher_fingerprint": teacher.fingerprint, "transfer_set_sha256": sha256_file(run.transfer_set)}
        if not self.chief:
            return result
        write_json(run.labelling, record)
        if result.reused_shards < result.shards:
            run.record_stage("label", result.seconds, record["transfer_set_sha256"], reused_shards=result.reused_shards)
        return result

    def _teacher_copies(self) -> list:
        """(device, teacher placed on it) for every device of this process's strategy, when it has several."""
        devices = distribute.local_devices(self.strategy)
        if len(devices) < 2:
            return []
        import tensorflow as tf

        from rasa_kd.models.teacher import Teacher

        copies = []
        for device in devices:
            with tf.device(device):
                copies.append((device, Teacher.load(self.run.teacher)))
        return copies

    # --- student ---------------------------------------------------------------------------------

    def student(self):
        """Train the student on the labelled transfer set; write OUT/student."""
        if self._student is None:
            self._student = self._student_stage()
        return self._student

    def _student_stage(self):
        from rasa_kd.distill.student_training import train_student
        from rasa_kd.models.student import StudentModel, new_student

        teacher, run, streamed = self.saved_teacher(), self.run, self.streamed
        transfer = self.transfer_file() if streamed else self.saved_transfer_set()
        s = self.config.student
        splits = self.splits
        arch_settings = (s.bilstm if s.type == "bilstm" else s.tinybert).for_examples(len(splits["train"][0]))
        transfer_sha = sha256_file(run.transfer_set)
        # Resolved, so a run whose chosen epochs would differ (another rasa-kd version) is not reused.
        training = s.training.for_data(len(splits["train"][0]), len(transfer), dev="dev" in splits)
        inputs = fingerprint([teacher.fingerprint, transfer_sha, s.type, dataclasses.asdict(arch_settings),
                              dataclasses.asdict(training), self.data_fingerprint()] + (["streamed"] if streamed else []))
        if not self.force and run.is_current("student", inputs, run.student):
            logger.info("student: reusing %s", run.student)
            return StudentModel.load(run.student)
        labelling = self.labelling()
        started = time.perf_counter()
        if s.training.epochs is None:
            logger.info("student: %d epochs over %d sentences (chosen for %d training examples)",
                        training.epochs, len(transfer), len(splits["train"][0]))
        if s.type == "bilstm" and (s.bilstm.embeddings is None or s.bilstm.train_embeddings is None):
            logger.info("student: %s embedding rows, %s (chosen for %d training examples)", arch_settings.embeddings,
                        "trained" if arch_settings.train_embeddings else "frozen", len(splits["train"][0]))
        elif s.type == "tinybert" and s.tinybert.embeddings is None and s.tinybert.init == "random":
            logger.info("student: %s embedding rows, projected (chosen for %d training examples)", arch_settings.embeddings,
                        len(splits["train"][0]))
        record = {"teacher_fingerprint": teacher.fingerprint, "teacher_base_model": teacher.record.get("base_model"),
                  "transfer_set_sha256": transfer_sha, "training_settings": dataclasses.asdict(training)}
        stream = self._student_stream(teacher, arch_settings, training.batch_size, labelling.cache_dir, transfer_sha) if streamed else None
        with distribute.scope(self.strategy):
            student, teacher_ids = new_student(s.type, arch_settings, teacher, None if streamed else transfer.texts,
                                               s.training.random_seed, record, used=stream.tokens.used if streamed else None,
                                               acceleration=self.acceleration, cache_dir=self.run.cache(self.config))
        if streamed:
            train_ids = logits = gold = teacher_ids = None
        else:
            index = {label: i for i, label in enumerate(student.labels)}
            gold = np.array([index.get(i, -1) if i is not None else -1 for i in transfer.intents], dtype=np.int32)
            train_ids, logits = student.vocab.map(teacher_ids), labelling.logits
        # Without a dev set, model-best is the epoch that fits the training sentences best.
        dev_texts, dev_gold = splits.get("dev") or _without(splits["train"], self.config.teacher.out_of_scope_intent)
        unknown = sorted(set(dev_gold) - set(student.labels))
        if unknown:
            logger.warning("dev intents the teacher does not know (always scored wrong): %s", unknown)
        result = train_student(
            student, train_ids, logits, gold, student.encode(dev_texts), dev_gold, training,
            run.checkpoints, teacher=teacher, teacher_train_ids=teacher_ids, progress=self.progress,
            held_out_dev="dev" in splits, strategy=self.strategy, stream=stream, acceleration=self.acceleration,
            **self._resume_arguments("student", inputs),
        )
        if not self.chief:
            return student
        student.extend_vocabulary()
        extra = {"training": {
            "best_epoch": result.best_epoch, f"dev_{result.dev_metric}": result.best_score,
            "epochs_run": len(result.epochs), "stopped_early": result.stopped_early, "seconds": round(result.seconds, 1)}}
        if training.calibrate:
            calibration = self.calibrate_student(student, teacher)
            if calibration:
                extra["calibration"] = calibration
        picked = self._student_threshold(student)
        if picked:
            extra["fallback_threshold"] = picked
            logger.info("student: a FallbackClassifier threshold of %.2f keeps %.0f%% of its answers on %s (%d messages)",
                        picked["threshold"], 100 * picked["keep"], picked["split"], picked["messages"])
        student.save(run.student, overwrite=True, extra=extra)
        write_json(run.training, result.as_dict())
        run.record_stage("student", time.perf_counter() - started, inputs, kind=s.type)
        shutil.rmtree(run.resume / "student", ignore_errors=True)
        return student.use_numpy()  # served as a loaded student is

    def _student_stream(self, teacher, arch_settings, batch_size: int, logits_folder: Path, transfer_sha256: str):
        """The transfer set's token ids (written to the cache once) and logits, read shard by shard."""
        from rasa_kd.distill.streaming import ShardStream, token_shards
        from rasa_kd.models.student import uses_special_tokens

        tokens = token_shards(self.transfer_file(), teacher, arch_settings.max_seq_length, uses_special_tokens(self.config.student.type),
                              self.config.labelling.shard_size, self.run.cache(self.config), self.progress, transfer_sha256)
        return ShardStream(tokens, logits_folder, len(teacher.labels), batch_size)

    def calibrate_student(self, student, teacher) -> Optional[dict]:
        """Set ``student.temperature`` so its softmax matches its teacher's on sentences it never trained on
        (:meth:`calibration_sentences`). None (temperature 1) when there are no such sentences."""
        from rasa_kd.distill import confidence as conf
        from rasa_kd.models.predictions import softmax

        split, texts, copies = self.calibration_sentences(teacher)
        if not texts:
            logger.info("student: no held-out sentences to calibrate on; temperature 1")
            return None
        sentences = texts + [text for text, _ in copies]
        read = texts + [shown for _, shown in copies]  # the teacher reads copies as it read the transfer set
        student.temperature = 1.0
        temperature = conf.fit_temperature(student.logits(sentences), softmax(teacher.logits(read)))
        student.temperature = temperature
        logger.info("student: temperature %.3f matches its confidences to the teacher's on %d sentences (%s and copies)",
                    temperature, len(sentences), split)
        return {"temperature": temperature, "fitted_on": split, "messages": len(texts), "sentences": len(sentences)}

    def calibration_sentences(self, teacher) -> Tuple[str, List[str], List[Tuple[str, str]]]:
        """The split the student never trained on (dev, else the examples kept back for the threshold), its
        sentences, and CALIBRATION_COPIES rule-made copies per sentence drawn among them (at most CALIBRATION_MAX),
        each with what the teacher reads of it (its masked words shown with ``transfer_set.rules.label_unmasked``)."""
        split, texts = self._student_held_out()
        if not texts:
            return split, [], []
        settings = self.config.transfer_set
        rng = np.random.default_rng(settings.random_seed + 3)
        augmenter = _rule_augmenter(teacher, settings.rules, rng)
        count = min(CALIBRATION_COPIES * len(texts), CALIBRATION_MAX)
        return split, list(texts), [augmenter.for_teacher(texts[i]) for i in rng.integers(0, len(texts), size=count)]

    def _student_threshold(self, student) -> Optional[dict]:
        """The student's threshold: keeping 95% of its answers on dev, else all of them on the examples kept out
        of its transfer set; None without either."""
        from rasa_kd.distill import confidence as conf

        split, texts = self._student_held_out()
        if not texts:
            return None
        # The teacher trained on the kept-back examples, so the student is surer of them than of new messages: the
        # 95% cut of them kept 70-96% of test answers (mean 84%) on the few-shot sets, their lowest 70-99% (mean 91%).
        keep = conf.KEEP if split == "dev" else KEEP_HOLDOUT
        return conf.held_out_threshold(conf.top_intents(student, texts)[1], split, keep)

    def _student_held_out(self) -> Tuple[str, List[str]]:
        """The sentences the student never trained on, and their split's name: dev, else the examples kept out
        of its transfer set (possibly none)."""
        if "dev" in self.splits:
            return "dev", self.splits["dev"][0]
        return HOLDOUT_SPLIT, [self.splits["train"][0][i] for i in self._threshold_holdout()]

    def _dev_threshold(self, model) -> dict:
        """The threshold that keeps 95% of ``model``'s answers on the dev split (held out from training)."""
        from rasa_kd.distill import confidence as conf

        return conf.held_out_threshold(conf.top_intents(model, self.splits["dev"][0])[1], "dev")

    def saved_student(self):
        from rasa_kd.models.student import StudentModel

        if self._student is None:
            if not self.run.student.is_dir():
                raise ModelLoadError(f"no student in {self.run.student}; run `rasa-kd student --output {self.run.root}` first")
            self._student = StudentModel.load(self.run.student)
        return self._student

    # --- evaluation ------------------------------------------------------------------------------

    def evaluate(self) -> dict:
        """Scores, agreement, sizes and latencies of teacher and student; metrics.json, report.md, plots."""
        from rasa_kd.distill import evaluate as ev

        started = time.perf_counter()
        run, config = self.run, self.config
        teacher, student = self.saved_teacher(), self.saved_student()
        splits = {k: v for k, v in self.splits.items() if k != "train"} or {"train": self.splits["train"]}
        models = {"teacher": teacher, "student": student}
        scores, predictions = ev.score_models(models, splits)
        agreements = {split: ev.agreement(predictions["teacher"][split], predictions["student"][split]) for split in splits}
        confidence, confidence_plots = self._confidence(models, splits)
        sentences = next(iter(splits.values()))[0]
        e = config.evaluation
        latency = {name: ev.measure_latency(model, sentences, e.latency_sentences, e.latency_batches) for name, model in models.items()}
        sizes = {"teacher": ev.folder_bytes(run.teacher), "student": ev.folder_bytes(run.student)}
        params = {"teacher": teacher.parameter_count(), "student": student.parameter_count()}
        metric = config.student.training.dev_metric
        metrics = {
            "date": datetime.date.today().isoformat(),
            "versions": package_versions(),
            "openblas_kernels": kernels_in_use(),  # the students' latency depends on them (rasa_kd/openblas.py)
            "teacher": {"params": params["teacher"], "size_bytes": sizes["teacher"], "scores": scores["teacher"],
                        "latency_ms": latency["teacher"], "fingerprint": teacher.fingerprint},
            "student": {"kind": student.kind, "params": params["student"], "size_bytes": sizes["student"],
                        "scores": scores["student"], "latency_ms": latency["student"],
                        "agreement_with_teacher": agreements, "vocab_size": student.vocab.size,
                        "retention": {split: _ratio(scores["student"][split][metric], scores["teacher"][split][metric])
                                      for split in splits}},
            "ratios": {
                "params": _ratio(params["teacher"], params["student"]),
                "size_bytes": _ratio(sizes["teacher"], sizes["student"]),
                "latency_batch_1": _ratio(latency["teacher"]["batch_1"], latency["student"]["batch_1"]),
                "latency_batch_256": _ratio(latency["teacher"]["batch_256_per_example"], latency["student"]["batch_256_per_example"]),
            },
            "transfer_set": read_json(run.transfer_stats) if run.transfer_stats.is_file() else {},
        }
        for name in models:
            metrics[name]["confidence"] = confidence[name]
        run.plots.mkdir(exist_ok=True)
        plots = {}
        last_split = list(splits)[-1]
        ev.plot_confusion(splits[last_split][1], predictions["student"][last_split], student.labels,
                          f"student on {last_split}", run.plots / "confusion_student.png")
        plots[f"Student confusion matrix ({last_split})"] = "plots/confusion_student.png"
        if run.training.is_file():
            ev.plot_training(read_json(run.training)["epochs"], metric, run.plots / "training.png")
            plots["Training curves"] = "plots/training.png"
        ev.plot_agreement(scores, agreements, metric, run.plots / "agreement.png")
        plots["Teacher-student agreement"] = "plots/agreement.png"
        plots.update(confidence_plots)
        run.record_stage("evaluate", time.perf_counter() - started, "")
        metrics["stages"] = {k: v for k, v in run.stage_records().items() if k in STAGES}
        write_json(run.metrics, metrics)
        ev.write_report(metrics, run.report, plots)
        return metrics

    def _confidence(self, models: Dict[str, object], splits: Dict[str, Examples]):
        """Calibration on the last scored split and, with ``data.out_of_scope`` or the split's examples of
        ``teacher.out_of_scope_intent``, out-of-scope separation; plots."""
        from rasa_kd.distill import confidence as conf

        split = list(splits)[-1]
        texts, gold = splits[split]
        out_texts = conf.read_out_of_scope(Path(self.config.data.out_of_scope)) if self.config.data.out_of_scope else []
        out_texts = (out_texts + self.held_out_out_of_scope(split)) or None
        results, in_scope, out_of_scope = {}, {}, {}
        dev = "dev" in self.splits and split != "dev"
        for name, model in models.items():
            predicted, top = conf.top_intents(model, texts)
            correct = np.array([p == g for p, g in zip(predicted, gold)])
            out = conf.top_intents(model, out_texts)[1] if out_texts else None
            results[name] = {"split": split, **conf.confidence_scores(top, correct, out)}
            # The threshold a user would set, picked on held-out messages, and what it does on this split: the
            # student stage recorded its own (on dev, or on the examples kept out of its transfer set); the
            # teacher's is picked on dev (it trained on every other example).
            picked = getattr(model, "record", {}).get("fallback_threshold") if name == "student" else None
            if picked is None and dev:
                picked = self._dev_threshold(model)
            if picked is not None and picked["split"] != split:
                results[name]["dev_threshold"] = {**picked, **conf.at_threshold(picked["threshold"], top, correct, out)}
            in_scope[name], out_of_scope[name] = (top, correct), out
        self.run.plots.mkdir(exist_ok=True)
        conf.plot_reliability(in_scope, self.run.plots / "reliability.png")
        conf.plot_confidence_histograms({n: (in_scope[n][0], out_of_scope[n]) for n in models},
                                        {n: results[n]["threshold"] for n in models}, self.run.plots / "confidence.png")
        title = "Top confidence, in scope" + (" against out of scope" if out_texts else "")
        return results, {f"Reliability diagram ({split})": "plots/reliability.png", title: "plots/confidence.png"}

    def run_stage(self, stage: str):
        """One stage by name; returns what it made (teacher, transfer set, labelling, student, metrics).

        A stage uses what earlier stages of this object made, or else what they saved in the folder.
        """
        if self.config.compute.strategy == "multi_worker" and stage not in ("teacher", "label", "student"):
            raise ConfigError(f"'compute.strategy: multi_worker' runs the teacher, label and student stages on every worker; "
                              f"run the {stage} stage on one machine (strategy one_device or mirrored) (docs/scaling.md)")
        # Saved when a stage runs, not when the object is built: reading a run (its splits, its student's
        # temperature) must not rewrite the config its outputs were made with.
        if self.chief and not self._config_saved:
            save_config(self.config, self.run.config)
            self._config_saved = True
        return {"teacher": self.teacher, "augment": self.transfer_set, "label": self.labelling,
                "student": self.student, "evaluate": self.evaluate}[stage]()

    def run_stages(self, stages: Sequence[str]):
        """``stages`` in order; returns what the last one made."""
        result = None
        for stage in stages:
            logger.info("== stage %s", stage)
            result = self.run_stage(stage)
        return result


def _without(examples: Examples, intent: Optional[str]) -> Examples:
    texts, intents = examples
    return [t for t, i in zip(texts, intents) if i != intent], [i for i in intents if i != intent]


def _ratio(a: float, b: float) -> float:
    return float(a) / float(b) if b else float("inf")


def _copy_existing_teacher(source: Path, target: Path) -> None:
    """Copy a saved teacher folder, or the teacher inside a Rasa model archive, byte for byte."""
    from rasa_kd.models.teacher import RECORD_FILE

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


def _gpt2_generator(settings, train_texts: List[str], progress: bool) -> Callable[[int], List[str]]:
    from rasa_kd.distill.gpt2 import fine_tune_gpt2, load_gpt2, sample_sentences

    lm, tokenizer = load_gpt2(settings.gpt2.model)
    if settings.gpt2.epochs:
        fine_tune_gpt2(lm, tokenizer, train_texts, settings.gpt2, settings.random_seed, progress)
    calls = iter(range(10**9))
    return lambda n: sample_sentences(lm, tokenizer, n, settings.gpt2, settings.random_seed + next(calls))


def _lm_sentences(settings, texts: List[str], intents: List[str], progress: bool) -> List[str]:
    """The LM's sentences for the transfer set, from prompts that list the given (kept) training sentences."""
    from rasa_kd.distill.lm import generate_for_examples

    started = time.perf_counter()
    made = generate_for_examples(texts, intents, settings.lm, settings.random_seed, progress)
    logger.info("augment: the LM wrote %d new sentences for %d intents in %.0f s", len(made), len(set(intents)),
                time.perf_counter() - started)
    return made


def absolute_paths(config: DistillConfig) -> DistillConfig:
    """The config with its file paths made absolute, so OUT/config.yml works from any folder."""
    def resolve(value):
        return str(Path(value).expanduser().resolve()) if value else value

    ts = config.transfer_set
    return dataclasses.replace(
        config,
        teacher=dataclasses.replace(config.teacher, path=resolve(config.teacher.path), model=resolve(config.teacher.model),
                                    out_of_scope_file=resolve(config.teacher.out_of_scope_file)),
        data=dataclasses.replace(config.data, train=resolve(config.data.train), dev=resolve(config.data.dev),
                                 test=resolve(config.data.test), out_of_scope=resolve(config.data.out_of_scope)),
        transfer_set=dataclasses.replace(ts, unlabelled_file=resolve(ts.unlabelled_file),
                                         gpt2=dataclasses.replace(ts.gpt2, model=resolve(ts.gpt2.model)),
                                         lm=dataclasses.replace(ts.lm, model=ts.lm.model if ts.lm.model == PACKAGED_MODEL else resolve(ts.lm.model))),
        labelling=dataclasses.replace(config.labelling, cache_dir=resolve(config.labelling.cache_dir)),
    )


def distil_examples(texts: Sequence[str], intents: Sequence[str], config: Optional[DistillConfig] = None,
                    output: Optional[Path] = None, dev: Optional[Examples] = None, progress: bool = True,
                    force: bool = False):
    """A student distilled from labelled examples in memory: teacher, transfer set, logits, student.

    ``output`` keeps the run (and resumes an earlier one); without it a temporary folder is used and
    deleted, and the returned student lives in memory only (save it with ``student.save(path)``).
    """
    splits = {"train": (texts, intents), **({"dev": dev} if dev else {})}
    config = config or DistillConfig()
    config = dataclasses.replace(config, data=dataclasses.replace(config.data, train=None, dev=None, test=None))
    stages = ("teacher", "augment", "label", "student")
    if output is not None:
        return Distillation(config, output, splits, progress, force).run_stages(stages)
    with tempfile.TemporaryDirectory(prefix="rasa-kd-distill-") as scratch:
        # A run in a folder deleted at its end has nothing to resume: no resume checkpoints.
        return Distillation(config, Path(scratch) / "run", splits, progress, force, resumable=False).run_stages(stages)


def run_stage(stage: str, config: DistillConfig, output: Path, progress: bool = True, force: bool = False):
    """Run one stage of the config's data, using the output folder's earlier stages."""
    if stage not in STAGES:
        raise ConfigError(f"unknown stage {stage!r}; the stages are {', '.join(STAGES)}")
    return Distillation(config, output, progress=progress, force=force).run_stage(stage)


def distill(config: DistillConfig, output: Path, progress: bool = True, force: bool = False) -> dict:
    """Every stage of the config's data files in order, then the evaluation; returns the metrics."""
    run = Distillation(config, output, progress=progress, force=force)
    return run.run_stages(STAGES)

"""Teacher logits for the transfer set, written shard by shard so a killed run resumes.

The cache folder is named by a key of the teacher's fingerprint, the transfer sentences and the
shard size. Shard ``i`` holds the logits of sentences ``[i*S, (i+1)*S)`` and appears under its final
name only once complete (written to a temporary name, then renamed), so a reader never sees half a
shard and a rerun skips every finished one.
"""
import hashlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from rasa_kd.errors import DataError
from rasa_kd.io_utils import atomic_write, read_json, write_json
from rasa_kd.progress import progress_bar

logger = logging.getLogger(__name__)


@dataclass
class LabellingResult:
    logits: np.ndarray  # float32 [sentences, labels]
    cache_dir: Path
    shards: int
    reused_shards: int
    seconds: float


def cache_key(teacher_fingerprint: str, texts: Sequence[str], max_seq_length: int, shard_size: int) -> str:
    digest = hashlib.sha256()
    for part in (teacher_fingerprint, str(max_seq_length), str(shard_size), str(len(texts))):
        digest.update(part.encode("utf-8") + b"\0")
    for text in texts:
        digest.update(text.encode("utf-8") + b"\n")
    return digest.hexdigest()[:20]


def _shard_path(folder: Path, index: int) -> Path:
    return folder / f"shard-{index:06d}.npy"


def _save_shard(path: Path, logits: np.ndarray) -> None:
    with atomic_write(path, "wb") as handle:
        np.save(handle, logits)


def _load_shard(path: Path, rows: int, labels: int) -> Optional[np.ndarray]:
    try:
        logits = np.load(path, allow_pickle=False)
    except (OSError, ValueError):
        return None
    return logits if logits.shape == (rows, labels) else None


def label_transfer_set(
    teacher,
    texts: Sequence[str],
    cache_root: Path,
    batch_size: int = 128,
    shard_size: int = 4096,
    progress: bool = True,
) -> LabellingResult:
    """Return the teacher's logits for ``texts``, computing only the shards not cached yet."""
    started = time.perf_counter()
    key = cache_key(teacher.fingerprint, texts, teacher.max_seq_length, shard_size)
    folder = Path(cache_root) / f"logits-{key}"
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob(".shard-*.tmp"):  # left by a killed run; never read
        stale.unlink()
    meta = {"key": key, "teacher_fingerprint": teacher.fingerprint, "sentences": len(texts),
            "labels": teacher.labels, "shard_size": shard_size}
    if (folder / "cache.json").is_file() and read_json(folder / "cache.json") != meta:
        raise DataError(f"{folder / 'cache.json'} does not describe this teacher and transfer set; delete {folder}")
    write_json(folder / "cache.json", meta)

    n_labels = len(teacher.labels)
    shard_count = (len(texts) + shard_size - 1) // shard_size
    parts, todo = [None] * shard_count, []
    for index in range(shard_count):
        rows = min(shard_size, len(texts) - index * shard_size)
        path = _shard_path(folder, index)
        parts[index] = _load_shard(path, rows, n_labels) if path.is_file() else None
        if parts[index] is None:
            todo.append(index)
    reused = shard_count - len(todo)
    if reused:
        logger.info("labelling: %d of %d shards already in %s", reused, shard_count, folder)
    bar = progress_bar(enabled=progress, description="teacher logits", total=len(texts), unit="sentence",
                       initial=sum(p.shape[0] for p in parts if p is not None))
    for index in todo:
        start = index * shard_size
        shard_texts = texts[start : start + shard_size]
        logits = teacher.logits(shard_texts, batch_size=batch_size)
        _save_shard(_shard_path(folder, index), logits)
        parts[index] = logits
        bar.update(len(shard_texts))
    bar.close()
    logits = np.concatenate(parts) if parts else np.zeros((0, n_labels), dtype=np.float32)
    return LabellingResult(logits, folder, shard_count, reused, time.perf_counter() - started)

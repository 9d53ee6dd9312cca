"""Teacher logits for the transfer set, written shard by shard so a killed run resumes.

The cache folder is named by a key of the teacher's fingerprint, the transfer sentences and the
shard size. Shard ``i`` holds the logits of sentences ``[i*S, (i+1)*S)`` and appears under its final
name only once complete (written to a temporary name, then renamed), so a reader never sees half a
shard and a rerun skips every finished one.

Several workers (processes, on one host or on hosts sharing the folder) can label one cache at once:
a worker computes a shard only after claiming it (``shard-i.claim``, naming its host and process,
written whole and then hard-linked into place, which fails if another worker holds it), so each shard
is computed once; it then takes the shards others finished. The claim of a worker that died is taken
over: at once on its own host (its process is gone), after ``claim_timeout`` seconds from another
host, after a few seconds if it cannot be read. A killed worker loses at most the shard it was computing.
Within one process, copies of the teacher on several devices (every GPU of a host) work the same
way, one thread a device.
"""
import contextlib
import hashlib
import json
import logging
import os
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import numpy as np

from rasa_kd.errors import DataError
from rasa_kd.io_utils import atomic_write, read_json, write_json
from rasa_kd.progress import progress_bar

logger = logging.getLogger(__name__)


@dataclass
class LabellingResult:
    logits: Optional[np.ndarray]  # float32 [sentences, labels]; None when not kept (a streamed transfer set)
    cache_dir: Path
    shards: int
    reused_shards: int  # finished before this call started
    seconds: float
    computed_shards: int = 0  # by this worker; the rest were reused or computed by other workers meanwhile
    shards_by_device: List[int] = field(default_factory=list)  # of computed_shards, by each device's teacher


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


# An unreadable claim older than this is taken over (a whole claim is written well within it).
_DAMAGED_CLAIM_GRACE = 10.0


def _claim_path(folder: Path, index: int) -> Path:
    return folder / f"shard-{index:06d}.claim"


def _holder_is_gone(claim: Path, timeout: float) -> bool:
    """Whether the worker that claimed a shard is dead: its process on this host, or silent for ``timeout``."""
    try:
        age = time.time() - claim.stat().st_mtime
        holder = json.loads(claim.read_text(encoding="utf-8"))
        if not isinstance(holder, dict):
            raise ValueError(claim)
    except OSError:
        return False  # just released: look again later
    except ValueError:
        # Claims appear whole (linked in after writing), so this one was damaged, or written by a worker killed
        # mid-write before claims were linked in; nobody will ever release it.
        return age > _DAMAGED_CLAIM_GRACE
    if holder.get("host") == socket.gethostname():
        try:
            os.kill(int(holder["pid"]), 0)
        except ProcessLookupError:
            return True
        except (PermissionError, KeyError, ValueError):
            return False
        return False
    return age > timeout


def _try_claim(folder: Path, index: int, timeout: float) -> bool:
    """Claim shard ``index`` for this process; False if a live worker holds it."""
    claim = _claim_path(folder, index)
    if claim.exists() and _holder_is_gone(claim, timeout):
        try:  # one worker wins the take-over: the rename moves the dead claim away exactly once
            os.replace(claim, folder / f".{claim.name}.{os.getpid()}.dead")
            (folder / f".{claim.name}.{os.getpid()}.dead").unlink()
            logger.info("labelling: taking over %s from a worker that is gone", claim.name)
        except FileNotFoundError:
            pass
    # Written whole under a name of this thread's own, then hard-linked to the claim's name: the link fails if
    # the claim exists, so exactly one worker wins, and a worker killed at any point leaves either no claim or
    # a whole one (whose dead holder is then detected), never an empty file that looks held forever.
    holder = json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "started": time.time()})
    draft = folder / f".{claim.name}.{os.getpid()}.{threading.get_ident()}.tmp"
    draft.write_text(holder, encoding="utf-8")
    try:
        os.link(draft, claim)
    except (FileExistsError, FileNotFoundError):  # held, or our draft swept by the worker that won this claim
        return False
    except OSError:  # a file system without hard links: create exclusively (a kill mid-write is aged out)
        try:
            handle = os.open(claim, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return False
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(holder)
    finally:
        draft.unlink(missing_ok=True)
    for stale in folder.glob(f".shard-{index:06d}.*.tmp"):  # a dead holder's half-written shard, losers' drafts; never read
        stale.unlink(missing_ok=True)
    return True


def label_transfer_set(
    teacher,
    texts: Sequence[str],
    cache_root: Path,
    batch_size: int = 128,
    shard_size: int = 4096,
    progress: bool = True,
    claim_timeout: float = 3600.0,
    poll_seconds: float = 0.5,
    keep_logits: bool = True,
    devices: Sequence[Tuple[Optional[str], object]] = (),
) -> LabellingResult:
    """Return the teacher's logits for ``texts``, computing only the shards not cached yet (nor being
    computed by another worker: those are waited for).

    ``texts`` may be read from disk on demand (:class:`rasa_kd.distill.streaming.TransferSetFile`); with
    ``keep_logits=False`` no shard stays in memory once written or checked, and the result's logits are None.
    ``devices`` (pairs of a TensorFlow device name and a copy of ``teacher`` placed on it) label shards side by
    side, one thread a device; without it ``teacher`` labels them all where TensorFlow places it.
    """
    started = time.perf_counter()
    key = cache_key(teacher.fingerprint, texts, teacher.max_seq_length, shard_size)
    folder = Path(cache_root) / f"logits-{key}"
    folder.mkdir(parents=True, exist_ok=True)
    meta = {"key": key, "teacher_fingerprint": teacher.fingerprint, "sentences": len(texts),
            "labels": teacher.labels, "shard_size": shard_size}
    if (folder / "cache.json").is_file() and read_json(folder / "cache.json") != meta:
        raise DataError(f"{folder / 'cache.json'} does not describe this teacher and transfer set; delete {folder}")
    write_json(folder / "cache.json", meta)

    n_labels = len(teacher.labels)
    shard_count = (len(texts) + shard_size - 1) // shard_size
    rows = [min(shard_size, len(texts) - index * shard_size) for index in range(shard_count)]
    parts: list = [None] * shard_count  # a shard's logits, or True once done when they are not kept

    def keep(logits: Optional[np.ndarray]):
        return logits if logits is None or keep_logits else True

    for index in range(shard_count):
        path = _shard_path(folder, index)
        parts[index] = keep(_load_shard(path, rows[index], n_labels)) if path.is_file() else None
    pending = [index for index in range(shard_count) if parts[index] is None]
    reused = shard_count - len(pending)
    if reused:
        logger.info("labelling: %d of %d shards already in %s", reused, shard_count, folder)
    bar = progress_bar(enabled=progress, description="teacher logits", total=len(texts), unit="sentence",
                       initial=sum(rows[i] for i in range(shard_count) if parts[i] is not None))
    lock = threading.Lock()

    def work(device: Optional[str], model) -> int:
        """Claim and compute shards until none is left to claim; then wait for those others hold."""
        import tensorflow as tf

        computed, waiting_since, todo = 0, None, list(pending)
        while True:
            with lock:
                todo = [index for index in todo if parts[index] is None]
            if not todo:
                return computed
            progressed = False
            for index in todo:
                path = _shard_path(folder, index)
                if parts[index] is None and path.is_file() and not _claim_path(folder, index).exists():
                    finished = keep(_load_shard(path, rows[index], n_labels))  # finished elsewhere (None: damaged)
                    with lock:
                        if finished is not None and parts[index] is None:
                            parts[index] = finished
                            bar.update(rows[index])
                            progressed = True
                if parts[index] is None and _try_claim(folder, index, claim_timeout):
                    try:
                        # Finished by a worker that died before releasing it? Then it is whole (it was renamed in).
                        done = keep(_load_shard(path, rows[index], n_labels)) if path.is_file() else None
                        if done is None:
                            start = index * shard_size
                            with tf.device(device) if device else contextlib.nullcontext():
                                logits = model.logits(texts[start : start + shard_size], batch_size=batch_size)
                            _save_shard(path, logits)
                            done = keep(logits)
                            computed += 1
                        parts[index] = done
                    finally:
                        _claim_path(folder, index).unlink(missing_ok=True)
                    bar.update(rows[index])
                    progressed = True
            if progressed:
                waiting_since = None
            else:  # every shard left is another worker's, for now
                if waiting_since is None:
                    waiting_since = time.monotonic()
                    logger.info("labelling: waiting for %d shards other workers are computing", len(todo))
                time.sleep(poll_seconds)

    labellers = list(devices) or [(None, teacher)]
    if len(labellers) == 1:
        by_device = [work(*labellers[0])]
    else:
        logger.info("labelling on %d devices: %s", len(labellers), ", ".join(str(d) for d, _ in labellers))
        with ThreadPoolExecutor(max_workers=len(labellers)) as pool:
            by_device = [future.result() for future in [pool.submit(work, *pair) for pair in labellers]]
    bar.close()
    if not keep_logits:
        logits = None
    else:
        logits = np.concatenate(parts) if parts else np.zeros((0, n_labels), dtype=np.float32)
    return LabellingResult(logits, folder, shard_count, reused, time.perf_counter() - started, sum(by_device), by_device)

"""One labelling worker over a shared cache (run by tests/test_labelling_workers.py, two at a time).

    python tests/labelling_worker.py TEACHER_DIR TRANSFER_SET.jsonl CACHE_DIR SHARD_SIZE

Prints {"computed": shards this worker computed, "shards": all shards} as JSON.
"""
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ["RASA_TELEMETRY_ENABLED"] = "false"
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

if __name__ == "__main__":
    from rasa_kd.distill.labelling import label_transfer_set
    from rasa_kd.distill.transfer_set import TransferSet
    from rasa_kd.models.teacher import Teacher

    teacher_dir, transfer_file, cache, shard_size = sys.argv[1:]
    teacher = Teacher.load(Path(teacher_dir))
    texts = TransferSet.load(Path(transfer_file)).texts
    result = label_transfer_set(teacher, texts, Path(cache), batch_size=100, shard_size=int(shard_size), progress=False,
                                poll_seconds=0.05)
    print(json.dumps({"computed": result.computed_shards, "shards": result.shards}))

"""How much room a teacher's contextual rows leave a student: the share of their variance in as many
directions as the teacher has intents, and in 16 (the tests' tiny-BERT width). A teacher that folds every
WordPiece onto its intents (a share near 1) gives a tiny-BERT started from these rows little to tell
words apart by (benchmarks/NOTES.md, "Fifth round").

    .venv/bin/python benchmarks/contextual_rank.py runs/fewshot/d1127/example_bot/bilstm/teacher ...
"""
import argparse
import sys
from pathlib import Path
from typing import List, Optional

import numpy as np


def variance_shares(teacher) -> dict:
    """Shares of the centred contextual rows' variance in the top len(labels) and top 16 principal directions."""
    from rasa_kd.models.networks import contextual_table

    rows = contextual_table(teacher, teacher.model.get_input_embeddings().weight.numpy())
    singular = np.linalg.svd(rows - rows.mean(axis=0), compute_uv=False)
    share = singular ** 2 / float((singular ** 2).sum())
    return {"intents": len(teacher.labels), "top_intents": float(share[: len(teacher.labels)].sum()),
            "top_16": float(share[:16].sum())}


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("teachers", nargs="+", type=Path, help="teacher folders")
    args = parser.parse_args(argv)
    from rasa_kd.models.teacher import Teacher

    for folder in args.teachers:
        s = variance_shares(Teacher.load(folder))
        print(f"{folder}: {s['intents']} intents; variance in {s['intents']} directions {100 * s['top_intents']:.1f}%, "
              f"in 16 {100 * s['top_16']:.1f}%", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

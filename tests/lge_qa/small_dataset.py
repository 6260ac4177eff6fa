"""A small dataset in the challenge layout, written case by case (no phantom rendering)."""

import numpy as np

from lge_qa import io, phantom


def write_small_dataset(root, *, n_scored=10, n_segmentation=1, shape=(12, 12, 3), seed=0):
    """Writes `n_scored` scored cases QA0000... and `n_segmentation` masks-only cases.

    Every volume is uint8 noise with a small LA mask in its first two slices; scores
    alternate between diagnostic and non-diagnostic. Returns the root.
    """
    rng = np.random.default_rng(seed)
    mask = np.zeros(shape, bool)
    mask[3:8, 3:8, :2] = True
    for i in range(n_segmentation):
        io.write_case(root / phantom.SEG_SPLIT, f"SEG{i:04d}", rng.integers(0, 256, shape, dtype=np.uint8), mask)
    scores = {}
    for i in range(n_scored):
        case_id = f"QA{i:04d}"
        io.write_case(root / phantom.QA_SPLIT, case_id, rng.integers(0, 256, shape, dtype=np.uint8), mask)
        scores[case_id] = [2 + i % 2] * 4
    io.write_scores_csv(root / phantom.SCORES_FILE, scores)
    return root


def snapshot(root) -> dict:
    """{relative path: (size, mtime_ns)} of every file under `root`."""
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*")) if p.is_file()}

"""The heatmap-loss training step over a cross-entropy step, at the quick and full sizes.

The measurement lives with the paper (`heatmap_loss/bench.py`); this module lets the
benchmark runner find it. `run(short=True)` is its short mode.
"""

from heatmap_loss.bench import run  # noqa: F401

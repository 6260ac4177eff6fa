"""Progress bars for long loops; silent when disabled or not on a terminal."""

import sys

from tqdm.auto import tqdm


def progress(iterable=None, *, total=None, desc=None, enabled=True, **kwargs):
    """Wraps an iterable in a tqdm bar (to stderr) unless `enabled` is False."""
    return tqdm(
        iterable,
        total=total,
        desc=desc,
        disable=not enabled,
        file=sys.stderr,
        dynamic_ncols=True,
        **kwargs,
    )

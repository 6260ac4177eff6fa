"""Executing the Colab notebooks headless, at a tiny size, in tests."""

import os
from pathlib import Path


def execute_notebook(path, *, env=None, timeout=900, cwd=None):
    """Runs every cell of a notebook in a fresh kernel; raises on the first failing cell.

    Args:
        path: str or Path. The `.ipynb` file.
        env: dict, optional. Extra environment variables for the kernel, e.g.
            `{"MEDREPRO_NOTEBOOK_PRESET": "tiny"}`, which each notebook reads in its
            first cell to pick its size. The source tree these modules come from is
            put first on the kernel's PYTHONPATH, so a checkout's paper packages
            import whatever the installed package lists.
        timeout: int, default 900. Seconds allowed per cell.
        cwd: str or Path, optional. Working directory of the kernel.

    Returns:
        The executed notebook node (outputs filled in).
    """
    import nbformat
    from nbclient import NotebookClient

    path = Path(path)
    nb = nbformat.read(path, as_version=4)
    saved = dict(os.environ)
    os.environ.update({k: str(v) for k, v in (env or {}).items()})
    source_root = str(Path(__file__).resolve().parents[2])
    os.environ["PYTHONPATH"] = os.pathsep.join(
        p for p in (source_root, os.environ.get("PYTHONPATH")) if p)
    try:
        client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                                resources={"metadata": {"path": str(cwd or path.parent)}})
        client.execute()
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return nb

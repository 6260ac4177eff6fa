"""`medrepro doctor`: what this installation can do."""

import importlib.metadata
import importlib.util
from pathlib import Path


OPTIONAL_READERS = {
    "itk (Scanco AIM via itk-ioscanco)": "itk",
    "nibabel (NIfTI)": "nibabel",
    "pynrrd (NRRD)": "nrrd",
    "umap-learn (embedding plots)": "umap",
    "psycopg2 (PostgreSQL)": "psycopg2",
}


def import_name_warnings(packages_distributions=None) -> list:
    """Warnings when the import name `shared` may not be medrepro's own package.

    `shared` is also the name of an unrelated distribution on the package index; when
    both are installed, `import shared` can load the other one.

    Args:
        packages_distributions: callable, optional. Top-level import name ->
            distribution names (default: `importlib.metadata.packages_distributions`).

    Returns:
        A list of one-line warnings, empty when all is well.
    """
    lookup = importlib.metadata.packages_distributions if packages_distributions is None \
        else packages_distributions
    warnings = []
    others = sorted({d for d in lookup().get("shared", []) if d.lower() != "medrepro"})
    if others:
        warnings.append(f"the import name 'shared' is also provided by {', '.join(others)}; "
                        f"uninstall it if medrepro commands fail to import")
    import shared

    here = Path(shared.__file__).resolve().parent
    if not (here / "cli" / "papers.py").is_file():
        warnings.append(f"'shared' resolves to {here}, which is not medrepro's package")
    try:
        importlib.metadata.distribution("medrepro")
    except importlib.metadata.PackageNotFoundError:
        warnings.append("the medrepro distribution is not installed (running from a source "
                        "tree?): pip install -e . makes the 'medrepro' command available")
    return warnings


def run_doctor(store_url: str) -> int:
    """Prints versions, devices, optional readers and the store's reachability."""
    import keras
    import tensorflow as tf

    from shared import __version__
    from shared.tracking.runs import git_revision

    ok = True
    print(f"medrepro     {__version__} ({git_revision() or 'no git revision'})")
    print(f"tensorflow   {tf.__version__}")
    print(f"keras        {keras.__version__} (backend: {keras.backend.backend()})")
    devices = tf.config.list_physical_devices()
    print("devices      " + ", ".join(f"{d.device_type}:{d.name.split(':')[-1]}" for d in devices))
    if not tf.config.list_physical_devices("GPU"):
        print("             no GPU visible: quick presets run on the CPU; paper presets want a GPU")
    for warning in import_name_warnings():
        print(f"warning      {warning}")
    for label, module in OPTIONAL_READERS.items():
        present = importlib.util.find_spec(module) is not None
        print(f"{'yes' if present else 'no ':3}          {label}")
    try:
        from shared.tracking.store import mask_url, open_store

        shown = mask_url(store_url)
        store = open_store(store_url)
        store.ping()
        print(f"store        reachable: {shown}")
    except Exception as err:  # noqa: BLE001 - doctor reports, never crashes
        ok = False
        print(f"store        NOT reachable: {mask_url(store_url)} ({mask_url(err)})")
    return 0 if ok else 1

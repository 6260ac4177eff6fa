"""`medrepro doctor`: what this installation can do."""

import importlib.util


OPTIONAL_READERS = {
    "itk (Scanco AIM via itk-ioscanco)": "itk",
    "nibabel (NIfTI)": "nibabel",
    "pynrrd (NRRD)": "nrrd",
    "umap-learn (embedding plots)": "umap",
    "psycopg2 (PostgreSQL)": "psycopg2",
}


def run_doctor(store_url: str) -> int:
    """Prints versions, devices, optional readers and the store's reachability."""
    import keras
    import tensorflow as tf

    from shared import __version__
    from shared.runs import git_revision

    ok = True
    print(f"medrepro     {__version__} ({git_revision() or 'no git revision'})")
    print(f"tensorflow   {tf.__version__}")
    print(f"keras        {keras.__version__} (backend: {keras.backend.backend()})")
    devices = tf.config.list_physical_devices()
    print("devices      " + ", ".join(f"{d.device_type}:{d.name.split(':')[-1]}" for d in devices))
    if not tf.config.list_physical_devices("GPU"):
        print("             no GPU visible: quick presets run on the CPU; paper presets want a GPU")
    for label, module in OPTIONAL_READERS.items():
        present = importlib.util.find_spec(module) is not None
        print(f"{'yes' if present else 'no ':3}          {label}")
    try:
        from shared.store import open_store

        store = open_store(store_url)
        store.ping()
        print(f"store        reachable: {store_url}")
    except Exception as err:  # noqa: BLE001 - doctor reports, never crashes
        ok = False
        print(f"store        NOT reachable: {store_url} ({err})")
    return 0 if ok else 1

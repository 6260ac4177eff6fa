"""Where a run's synthetic images come from: generated now, or read from a folder.

`synthetic_splits` returns the model arrays of the train, validation and test
splits (`heatmap_loss.data.model_arrays`), a description of their source for the
protocol, and a function that writes the run's sample sheet. Generated splits use
the seeds `seed`, `seed + 1` and `seed + 2`: the test set is drawn once from its
own seed. A folder written by `medrepro heatmap-loss generate` (`train.npz`,
`val.npz`, `test.npz`) is read back through `load_dataset` instead. `data_block` is
the claims' record of either (the generator's settings, or the files' SHA-256).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from heatmap_loss.data import load_dataset, model_arrays, save_sample_sheet
from heatmap_loss.phantom import CLASSES, generate

SPLITS = ("train", "val", "test")


def synthetic_splits(config, *, experiment: int, seed: int, data_dir=None) -> tuple:
    """(splits, source, sample_sheet) of a synthetic-data run.

    Args:
        config: HeatmapLossConfig (image size and split sizes).
        experiment: int, 1 or 2.
        seed: int. Seed of the train split; validation and test use seed + 1, + 2.
        data_dir: str or Path, optional. Folder holding `train.npz`, `val.npz` and
            `test.npz` (all three are needed: the test set is never cut from the
            training data here).

    Returns:
        splits: dict split -> model arrays. source: dict for the protocol.
        sample_sheet: callable(path) writing the sample sheet of the train split.

    Raises:
        FileNotFoundError: the folder or one of its files is missing.
        ValueError: a file holds the other experiment's images (names the file).
    """
    data = {}
    if data_dir is None:
        for split, drawn in generator_settings(config, experiment=experiment, seed=seed)["splits"].items():
            data[split] = generate(drawn["n"], experiment=experiment, seed=drawn["seed"])
        source = {"source": f"synthetic experiment-{experiment} images generated once",
                  "seed": int(seed) + 2, "images": int(config.n_test),
                  "train_val_seeds": [int(seed), int(seed) + 1]}
    else:
        folder = Path(data_dir)
        if not folder.is_dir():
            raise FileNotFoundError(f"data folder not found: {folder} (expected train.npz, "
                                    "val.npz and test.npz from `medrepro heatmap-loss generate`)")
        for split in SPLITS:
            path = folder / f"{split}.npz"
            if not path.exists():
                raise FileNotFoundError(f"{path}: file missing; expected train.npz, val.npz "
                                        "and test.npz (generate with --n-test > 0)")
            data[split] = load_dataset(path)
            if data[split].experiment != experiment:
                raise ValueError(f"{path}: field 'experiment' is {data[split].experiment}; "
                                 f"expected {experiment} (pass --experiment "
                                 f"{data[split].experiment} or another folder)")
            present = np.unique(data[split].labels)
            if len(present) < 2:
                raise ValueError(f"{path}: array 'labels' holds only class {int(present[0])} "
                                 f"({CLASSES[int(present[0])]}); expected at least two classes in every "
                                 "split (a one-class set cannot be trained or scored)")
        source = {"source": f"synthetic experiment-{experiment} images read from {folder}",
                  "file": str(folder / "test.npz"), "images": len(data["test"])}
    splits = {split: _with_marker(model_arrays(data[split], config.image_size), experiment)
              for split in SPLITS}
    return splits, source, lambda path: save_sample_sheet(data["train"], path)


def generator_settings(config, *, experiment: int, seed: int) -> dict:
    """What decides the generated images: the experiment, and each split's size and seed
    (`seed`, `seed + 1`, `seed + 2` for train, validation and test)."""
    sizes = {"train": config.n_train, "val": config.n_val, "test": config.n_test}
    return {"experiment": int(experiment),
            "splits": {split: {"n": int(sizes[split]), "seed": int(seed) + offset}
                       for offset, split in enumerate(SPLITS)}}


def data_block(config, *, experiment: int, seed: int, data_dir=None, run_dir) -> dict:
    """The claims' `data` block of the images `synthetic_splits` returns.

    Args:
        config, experiment, seed, data_dir: as `synthetic_splits`.
        run_dir: str or Path. The run folder; a given `data_dir` is only read, its
            manifest (a SHA-256 per file read) is written here.
    """
    from shared.study.provenance import synthetic_data, user_data

    if data_dir is None:
        return synthetic_data("heatmap_loss.phantom.generate",
                              generator_settings(config, experiment=experiment, seed=seed))
    return user_data(data_dir, run_dir, files=[f"{split}.npz" for split in SPLITS])


def _with_marker(arrays: dict, experiment: int) -> dict:
    """Experiment 1 has no marker: its arrays carry no marker region."""
    if experiment != 2:
        arrays = {k: v for k, v in arrays.items() if k != "marker"}
    return arrays

"""The shared model-bundle layout: write, validate, read back, refuse."""

import json

import keras
import numpy as np
import pytest

from shared.io.bundle import (bundle_folders, bundle_metadata, load_bundle_array, load_bundle_model,
                              read_metadata, resolve_bundle, validate_metadata, write_bundle)


def _meta(paper="paper_a", name="arm"):
    tensor = {"type": "image", "format": "magnitude", "num_channels": 1, "spatial_shape": [4],
              "dtype": "float32", "channel_def": {"0": "image"}}
    return bundle_metadata(paper=paper, name=name, task="t", description="d",
                           inputs={"image": tensor},
                           outputs={"pred": {**tensor, "channel_def": {"0": "no", "1": "yes"}}},
                           preprocessing={"normalisation": "none"},
                           training={"run": "/r", "seed": 0}, data_source="synthetic",
                           data_type="png")


def _model():
    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, name="head")], name="tiny")


def test_round_trip_gives_the_same_outputs_and_arrays(tmp_path):
    model = _model()
    mean = np.arange(8, dtype=np.float32).reshape(2, 4)
    folder = write_bundle(tmp_path / "b", model, _meta(), arrays={"mean_volume": mean})
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "mean_volume.npy", "metadata.json",
                                                         "model.weights.h5"]
    meta = read_metadata(folder, paper="paper_a")
    assert meta["files"]["mean_volume"] == "mean_volume.npy"
    assert "not for diagnostic use" in meta["intended_use"] and meta["versions"]["keras"] == keras.__version__
    np.testing.assert_array_equal(load_bundle_array(folder, meta, "mean_volume"), mean)
    x = np.random.default_rng(0).normal(size=(3, 4)).astype("float32")
    np.testing.assert_allclose(load_bundle_model(folder)(x), model(x), rtol=1e-6)


def test_refusals_name_the_file_and_field(tmp_path):
    folder = write_bundle(tmp_path / "b", _model(), _meta())
    with pytest.raises(ValueError, match=r"metadata.json: field 'paper' is 'paper_a'; expected 'paper_b'"):
        read_metadata(folder, paper="paper_b")
    bad = {**_meta(), "intended_use": "diagnosis"}
    with pytest.raises(ValueError, match=r"metadata.json: field 'intended_use'"):
        validate_metadata(bad, folder / "metadata.json")
    with pytest.raises(ValueError, match=r"field 'network_data_format.inputs.image'"):
        meta = _meta()
        del meta["network_data_format"]["inputs"]["image"]["dtype"]
        write_bundle(tmp_path / "never", _model(), meta)
    assert not (tmp_path / "never").exists()  # an invalid document leaves no bundle
    (folder / "metadata.json").write_text("{not json")
    with pytest.raises(ValueError, match="metadata.json: not valid JSON"):
        read_metadata(folder, paper="paper_a")
    (folder / "metadata.json").unlink()
    with pytest.raises(ValueError, match=r"metadata.json: not found; .* is not a model bundle"):
        read_metadata(folder, paper="paper_a")
    other = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="head")])
    other.save_weights(folder / "model.weights.h5")
    with pytest.raises(ValueError, match="model.weights.h5: weights do not fit"):
        load_bundle_model(folder)
    with pytest.raises(ValueError, match="'files.mean_volume'"):
        load_bundle_array(folder, _meta(), "mean_volume")


def test_a_run_folder_resolves_to_its_named_or_only_bundle(tmp_path):
    run = tmp_path / "run"
    write_bundle(run / "bundles" / "a", _model(), _meta(name="a"))
    assert resolve_bundle(run) == run / "bundles" / "a"
    write_bundle(run / "bundles" / "b", _model(), _meta(name="b"))
    assert bundle_folders(run) == [run / "bundles" / "a", run / "bundles" / "b"]
    assert resolve_bundle(run, name="b") == run / "bundles" / "b"
    with pytest.raises(ValueError, match=r"holds 2 bundles \['a', 'b'\]"):
        resolve_bundle(run)
    with pytest.raises(ValueError, match=r"no bundle 'c'; expected one of \['a', 'b'\]"):
        resolve_bundle(run, name="c")
    assert json.loads((run / "bundles" / "b" / "metadata.json").read_text())["name"] == "b"


def test_bundles_and_tensorboard_logs_are_run_outputs(tmp_path):
    # --overwrite clears them with the rest of a run, and a demo folder holding them is
    # still recognised as runs (shared.io.run_folder.RUN_OUTPUTS).
    from shared.io.run_folder import RUN_MARKER, clear_run_outputs, is_run_output

    assert is_run_output("bundles") and is_run_output("tensorboard")
    write_bundle(tmp_path / "bundles" / "a", _model(), _meta(name="a"))
    (tmp_path / "tensorboard" / "a").mkdir(parents=True)
    (tmp_path / RUN_MARKER).write_text("{}")
    clear_run_outputs(tmp_path)
    assert not (tmp_path / "bundles").exists() and not (tmp_path / "tensorboard").exists()


def test_weights_hold_the_model_not_its_optimizer(tmp_path):
    import h5py

    model = _model()
    model.compile(optimizer="adam", loss="mse")
    x = np.ones((4, 4), "float32")
    model.fit(x, np.zeros((4, 2), "float32"), epochs=1, verbose=0)  # Adam slots now exist
    folder = write_bundle(tmp_path / "b", model, _meta())
    with h5py.File(folder / "model.weights.h5") as h5:
        names = []
        h5.visit(names.append)
    assert not [n for n in names if n.startswith("optimizer")]
    np.testing.assert_allclose(load_bundle_model(folder)(x), model(x), rtol=1e-6)

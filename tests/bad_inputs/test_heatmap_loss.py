"""Bad inputs of `medrepro heatmap-loss`: one error line naming the file and the field."""

import json

import nibabel as nib
import numpy as np
import pytest

from heatmap_loss.data import write_dataset
from shared.testing.bad_input import assert_one_line_error

pytestmark = pytest.mark.no_keras


def _run(data, *extra):
    return ["heatmap-loss", "run", "--preset", "tiny", "--data", data, "--no-progress",
            "--store", f"sqlite:///{data}/../store.sqlite", "--out", f"{data}/../run", *extra]


@pytest.fixture
def npz_folder(tmp_path):
    folder = tmp_path / "data"
    write_dataset(folder, experiment=1, n_train=8, n_val=4, n_test=4, seed=0)
    return folder


def _rewrite(path, **changes):
    with np.load(path, allow_pickle=False) as archive:
        arrays = {k: archive[k] for k in archive.files}
    arrays.update(changes)
    for key in [k for k, v in changes.items() if v is None]:
        arrays.pop(key)
    np.savez_compressed(path, **arrays)


def test_missing_data_folder(tmp_path):
    assert_one_line_error(_run(tmp_path / "nowhere"), "nowhere", "not found")


def test_missing_validation_file(npz_folder):
    (npz_folder / "val.npz").unlink()
    assert_one_line_error(_run(npz_folder), "val.npz", "missing")


def test_truncated_npz(npz_folder):
    path = npz_folder / "train.npz"
    path.write_bytes(path.read_bytes()[:200])
    assert_one_line_error(_run(npz_folder), "train.npz", "cannot read")


def test_npz_that_is_not_an_archive(npz_folder):
    (npz_folder / "test.npz").write_bytes(b"images,labels\n1,2\n")
    assert_one_line_error(_run(npz_folder), "test.npz", "cannot read")


def test_npz_without_images(npz_folder):
    _rewrite(npz_folder / "train.npz", images=None)
    assert_one_line_error(_run(npz_folder), "train.npz", "images")


def test_images_of_the_wrong_rank(npz_folder):
    _rewrite(npz_folder / "val.npz", images=np.zeros((4, 105), np.uint8))
    assert_one_line_error(_run(npz_folder), "val.npz", "'images'", "[N, height, width]")


def test_images_of_a_string_dtype(npz_folder):
    _rewrite(npz_folder / "val.npz", images=np.full((4, 105, 135), "a"))
    assert_one_line_error(_run(npz_folder), "val.npz", "'images'", "dtype")


def test_nan_pixels(npz_folder):
    images = np.load(npz_folder / "train.npz")["images"].astype(np.float32)
    images[3, 10, 10] = np.nan
    _rewrite(npz_folder / "train.npz", images=images)
    assert_one_line_error(_run(npz_folder), "train.npz", "image 3", "NaN")


def test_infinite_pixels(npz_folder):
    images = np.load(npz_folder / "test.npz")["images"].astype(np.float64)
    images[1, 0, 0] = np.inf
    _rewrite(npz_folder / "test.npz", images=images)
    assert_one_line_error(_run(npz_folder), "test.npz", "image 1", "infinite")


def test_unknown_label(npz_folder):
    labels = np.load(npz_folder / "train.npz")["labels"].copy()
    labels[2] = 7
    _rewrite(npz_folder / "train.npz", labels=labels)
    assert_one_line_error(_run(npz_folder), "train.npz", "'labels'", "sample 2", "label 7")


def test_float_labels(npz_folder):
    labels = np.load(npz_folder / "val.npz")["labels"].astype(np.float32)
    _rewrite(npz_folder / "val.npz", labels=labels)
    assert_one_line_error(_run(npz_folder), "val.npz", "'labels'", "integers")


def test_masks_that_do_not_match_images(npz_folder):
    _rewrite(npz_folder / "train.npz", masks=np.zeros((8, 50, 50), np.uint8))
    assert_one_line_error(_run(npz_folder), "train.npz", "masks", "same samples")


def test_mask_codes_out_of_range(npz_folder):
    masks = np.load(npz_folder / "train.npz")["masks"].copy()
    masks[0, 0, 0] = 9
    _rewrite(npz_folder / "train.npz", masks=masks)
    assert_one_line_error(_run(npz_folder), "train.npz", "'masks'", "0-6")


def test_empty_dataset_file(npz_folder):
    _rewrite(npz_folder / "test.npz", images=np.zeros((0, 105, 135), np.uint8),
             masks=np.zeros((0, 105, 135), np.uint8), labels=np.zeros(0, np.int64))
    assert_one_line_error(_run(npz_folder), "test.npz", "no images")


def test_files_of_the_other_experiment(npz_folder):
    assert_one_line_error(_run(npz_folder, "--experiment", "2"), "train.npz", "'experiment'")


def test_info_that_is_not_json(npz_folder):
    _rewrite(npz_folder / "train.npz", info=np.asarray("{experiment: 1"))
    assert_one_line_error(_run(npz_folder), "train.npz", "cannot read")


def test_missing_weights_file(npz_folder, tmp_path):
    assert_one_line_error(_run(npz_folder, "--weights", tmp_path / "vgg.weights.h5"),
                          "vgg.weights.h5", "--weights")


# ----------------------------------------------------------------------- ACDC


def _patient(root, number=1, group="NOR", *, info=None, shape=(40, 30, 4)):
    folder = root / f"patient{number:03d}"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "Info.cfg").write_text(info if info is not None
                                     else f"ED: 1\nES: 3\nGroup: {group}\n")
    for frame in (1, 3):
        image = np.random.default_rng(number).uniform(0, 500, shape).astype(np.float32)
        gt = np.zeros(shape, np.uint8)
        gt[10:20, 8:16, 1:3] = 2
        nib.save(nib.Nifti1Image(image, np.eye(4)), folder / f"{folder.name}_frame{frame:02d}.nii.gz")
        nib.save(nib.Nifti1Image(gt, np.eye(4)), folder / f"{folder.name}_frame{frame:02d}_gt.nii.gz")
    return folder


def _acdc(root):
    return ["heatmap-loss", "acdc-info", root]


def test_acdc_folder_without_patients(tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    assert_one_line_error(_run(tmp_path), str(tmp_path), "no patientNNN")


def test_acdc_unknown_group(tmp_path):
    _patient(tmp_path, info="ED: 1\nES: 3\nGroup: ABC\n")
    assert_one_line_error(_acdc(tmp_path), "Info.cfg", "'Group'", "ABC")


def test_acdc_frame_that_is_not_a_number(tmp_path):
    _patient(tmp_path, info="ED: first\nES: 3\nGroup: NOR\n")
    assert_one_line_error(_acdc(tmp_path), "Info.cfg", "'ED'")


def test_acdc_line_without_colon(tmp_path):
    _patient(tmp_path, info="ED 1\nES: 3\nGroup: NOR\n")
    assert_one_line_error(_acdc(tmp_path), "Info.cfg", "line 1", "Key: value")


def test_acdc_duplicate_field(tmp_path):
    _patient(tmp_path, info="ED: 1\nES: 3\nED: 2\nGroup: NOR\n")
    assert_one_line_error(_acdc(tmp_path), "Info.cfg", "'ED'", "twice")


def test_acdc_info_that_is_not_text(tmp_path):
    _patient(tmp_path, info="")
    (tmp_path / "patient001" / "Info.cfg").write_bytes(b"\xff\xfeE\x00D\x00")
    assert_one_line_error(_acdc(tmp_path), "Info.cfg", "UTF-8")


def test_acdc_missing_ground_truth(tmp_path):
    folder = _patient(tmp_path)
    (folder / "patient001_frame03_gt.nii.gz").unlink()
    assert_one_line_error(_acdc(tmp_path), "patient001_frame03_gt.nii.gz", "not found")


def test_acdc_truncated_volume(tmp_path):
    folder = _patient(tmp_path)
    path = folder / "patient001_frame01.nii.gz"
    path.write_bytes(path.read_bytes()[:60])
    assert_one_line_error(_acdc(tmp_path), "patient001_frame01.nii.gz", "cannot read")


def test_acdc_nan_voxels(tmp_path):
    folder = _patient(tmp_path)
    image = np.ones((40, 30, 4), np.float32)
    image[0, 1, 2] = np.nan
    nib.save(nib.Nifti1Image(image, np.eye(4)), folder / "patient001_frame01.nii.gz")
    assert_one_line_error(_acdc(tmp_path), "patient001_frame01.nii.gz", "NaN")


def test_acdc_infinite_voxels(tmp_path):
    folder = _patient(tmp_path)
    image = np.ones((40, 30, 4), np.float32)
    image[5, 5, 0] = -np.inf
    nib.save(nib.Nifti1Image(image, np.eye(4)), folder / "patient001_frame03.nii.gz")
    assert_one_line_error(_acdc(tmp_path), "patient001_frame03.nii.gz", "infinite")


def test_acdc_labels_out_of_range(tmp_path):
    folder = _patient(tmp_path)
    nib.save(nib.Nifti1Image(np.full((40, 30, 4), 5, np.uint8), np.eye(4)),
             folder / "patient001_frame01_gt.nii.gz")
    assert_one_line_error(_acdc(tmp_path), "patient001_frame01_gt.nii.gz", "labels must be 0-3")


def test_acdc_shapes_that_disagree(tmp_path):
    folder = _patient(tmp_path)
    nib.save(nib.Nifti1Image(np.zeros((8, 8, 4), np.uint8), np.eye(4)),
             folder / "patient001_frame03_gt.nii.gz")
    assert_one_line_error(_acdc(tmp_path), "patient001_frame03_gt.nii.gz", "does not match")


def test_acdc_two_dimensional_volume(tmp_path):
    folder = _patient(tmp_path)
    nib.save(nib.Nifti1Image(np.zeros((40, 30), np.float32), np.eye(4)),
             folder / "patient001_frame01.nii.gz")
    assert_one_line_error(_acdc(tmp_path), "patient001_frame01.nii.gz", "3D volume")


def test_acdc_zero_spacing(tmp_path):
    folder = _patient(tmp_path)
    image = nib.Nifti1Image(np.ones((40, 30, 4), np.float32), np.eye(4))
    image.header["pixdim"][1] = 0.0
    nib.save(image, folder / "patient001_frame01.nii.gz")
    assert_one_line_error(_acdc(tmp_path), "patient001_frame01.nii.gz", "'pixdim'")


def test_acdc_every_patient_bad_even_when_skipping(tmp_path):
    folder = _patient(tmp_path)
    (folder / "patient001_frame01.nii.gz").write_bytes(b"")
    assert_one_line_error(_acdc(tmp_path) + ["--skip-bad-patients"], str(tmp_path),
                          "1 patients skipped")


def test_generate_needs_two_images(tmp_path):
    assert_one_line_error(["heatmap-loss", "generate", "--n", "1", "--out", tmp_path], "--n")


def test_report_json_is_not_required_to_exist(tmp_path):
    # A folder that holds someone's files is never taken as a run folder.
    data = tmp_path / "data"
    write_dataset(data, experiment=1, n_train=4, n_val=2, n_test=2, seed=0)
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.json").write_text(json.dumps({"a": 1}))
    argv = ["heatmap-loss", "run", "--preset", "tiny", "--data", data, "--out", out,
            "--store", f"sqlite:///{tmp_path}/s.sqlite"]
    assert_one_line_error(argv, str(out), "not a medrepro run")


# ------------------------------------------- headers that declare what the file does not hold
def _refused_within(limit_mb, argv, *names):
    from shared.testing.memory import peak_allocation

    assert_one_line_error(argv, *names)  # the first run imports what the command needs
    peak = peak_allocation(lambda: assert_one_line_error(argv, *names))
    assert peak < limit_mb * 2**20, f"refusing took {peak / 2**20:.0f} MB"


def _forge_npz_member(path, name, header):
    import io
    import zipfile

    with np.load(path, allow_pickle=False) as archive:
        arrays = {k: archive[k] for k in archive.files}
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as out:
        for key, value in arrays.items():
            buffer = io.BytesIO()
            if key == name:
                np.lib.format.write_array_header_1_0(buffer, header)
                buffer.write(b"\x00" * 64)
            else:
                np.save(buffer, value)
            out.writestr(f"{key}.npy", buffer.getvalue())


def test_npz_header_declaring_1e15_floats(npz_folder):
    path = npz_folder / "train.npz"
    _forge_npz_member(path, "images", {"descr": "<f8", "fortran_order": False, "shape": (10**15,)})
    _refused_within(200, _run(npz_folder), "train.npz", "array 'images'", "1000000000000000", "the file holds")


def test_npz_header_declaring_more_rows_than_stored(npz_folder):
    path = npz_folder / "val.npz"
    _forge_npz_member(path, "labels", {"descr": "<i8", "fortran_order": False, "shape": (100,)})
    assert_one_line_error(_run(npz_folder), "val.npz", "array 'labels'", "the file holds")


def test_npz_header_declaring_fewer_values_than_stored(npz_folder):
    path = npz_folder / "test.npz"
    with np.load(path) as archive:
        n = len(archive["labels"])
    import io
    import zipfile

    with np.load(path, allow_pickle=False) as archive:
        arrays = {k: archive[k] for k in archive.files}
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as out:
        for key, value in arrays.items():
            buffer = io.BytesIO()
            if key == "labels":
                np.lib.format.write_array_header_1_0(buffer, {"descr": "<i8", "fortran_order": False,
                                                              "shape": (n - 1,)})
                buffer.write(value.astype("<i8").tobytes())
            else:
                np.save(buffer, value)
            out.writestr(f"{key}.npy", buffer.getvalue())
    assert_one_line_error(_run(npz_folder), "test.npz", "array 'labels'", "expected them to agree")


def test_npz_labels_of_one_class(npz_folder):
    path = npz_folder / "train.npz"
    with np.load(path) as archive:
        labels = archive["labels"]
    _rewrite(path, labels=np.zeros_like(labels))
    assert_one_line_error(_run(npz_folder), "train.npz", "array 'labels'", "only class 0", "two classes")


@pytest.mark.parametrize("value", ["inf", "-inf", "nan", "0", "1.5", "1e30"])
def test_acdc_frame_number_out_of_range(tmp_path, value):
    _patient(tmp_path, info=f"ED: {value}\nES: 3\nGroup: NOR\n")
    assert_one_line_error(_acdc(tmp_path), "Info.cfg", "'ED'", "whole number from 1", repr(value))


@pytest.mark.parametrize("spacing", [0.001, 500.0])
def test_acdc_spacing_out_of_range(tmp_path, spacing):
    folder = _patient(tmp_path)
    image = nib.Nifti1Image(np.ones((40, 30, 4), np.float32), np.eye(4))
    image.header["pixdim"][2] = spacing
    nib.save(image, folder / "patient001_frame03.nii.gz")
    assert_one_line_error(_acdc(tmp_path), "patient001_frame03.nii.gz", "'pixdim'", "0.05 to 20 mm")


def _forged_nifti_header(path, shape, dtype=np.float32):
    import gzip

    header = nib.Nifti1Header()
    header.set_data_dtype(dtype)
    header.set_data_shape(shape)
    path.write_bytes(gzip.compress(header.binaryblock + b"\x00" * 68))


def test_acdc_header_declaring_30000_cubed_voxels(tmp_path):
    folder = _patient(tmp_path)
    path = folder / "patient001_frame01.nii.gz"
    _forged_nifti_header(path, (30000, 30000, 30000))
    assert path.stat().st_size < 500
    _refused_within(200, _acdc(tmp_path), path.name, "'dim'", "30000 x 30000 x 30000")


def test_acdc_rgb_volume(tmp_path):
    folder = _patient(tmp_path)
    rgb = np.zeros((40, 30, 4), dtype=[("R", "u1"), ("G", "u1"), ("B", "u1")])
    nib.save(nib.Nifti1Image(rgb, np.eye(4)), folder / "patient001_frame01.nii.gz")
    assert_one_line_error(_acdc(tmp_path), "patient001_frame01.nii.gz", "'datatype'", "colour")


def test_acdc_complex_volume(tmp_path):
    folder = _patient(tmp_path)
    data = np.ones((40, 30, 4), np.complex64) * (1 + 2j)
    nib.save(nib.Nifti1Image(data, np.eye(4)), folder / "patient001_frame03.nii.gz")
    assert_one_line_error(_acdc(tmp_path), "patient001_frame03.nii.gz", "'datatype'", "complex")


def test_acdc_patients_of_one_class(tmp_path):
    # Six NOR patients: every split is 'normal' only; refused before any model trains.
    for number in range(1, 7):
        _patient(tmp_path / "acdc", number, "NOR")
    line = assert_one_line_error(_run(tmp_path / "acdc"), "acdc", "'Group'", "only class ['normal']",
                                 "two classes")
    assert not (tmp_path / "run").exists() or not any((tmp_path / "run").iterdir()), line


def test_acdc_unknown_datatype_code(tmp_path):
    import gzip

    folder = _patient(tmp_path)
    path = folder / "patient001_frame03_gt.nii.gz"
    raw = bytearray(gzip.decompress(path.read_bytes()))
    raw[70:72] = (999).to_bytes(2, "little")  # the header's 'datatype' field
    path.write_bytes(gzip.compress(bytes(raw)))
    assert_one_line_error(_acdc(tmp_path), path.name, "cannot read the NIfTI header", "data code 999")

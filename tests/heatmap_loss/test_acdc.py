import nibabel as nib
import numpy as np
import pytest

from heatmap_loss.acdc import (acdc_splits, class_weights, load_acdc, read_info_cfg,
                               split_patients, to_millimetre_grid)


def _write_patient(root, number, group, *, heart_slices=(1, 2), shape=(40, 30, 4), ed=1, es=3,
                   spacing=(1.0, 1.0)):
    folder = root / f"patient{number:03d}"
    folder.mkdir(parents=True)
    (folder / "Info.cfg").write_text(f"ED: {ed}\nES: {es}\nGroup: {group}\nHeight: 180.0\n"
                                     "NbFrame: 10\nWeight: 80.0\n")
    rng = np.random.default_rng(number)
    affine = np.diag([spacing[0], spacing[1], 10.0, 1.0])
    for frame in (ed, es):
        image = rng.uniform(0, 500, shape).astype(np.float32)
        gt = np.zeros(shape, dtype=np.uint8)
        for z in heart_slices:
            gt[10:20, 8:16, z] = 2  # myocardium
            gt[12:18, 10:14, z] = 3  # LV cavity
            gt[22:26, 10:14, z] = 1  # RV cavity
        nib.save(nib.Nifti1Image(image, affine), folder / f"patient{number:03d}_frame{frame:02d}.nii.gz")
        nib.save(nib.Nifti1Image(gt, affine), folder / f"patient{number:03d}_frame{frame:02d}_gt.nii.gz")
    return folder


@pytest.fixture
def acdc(tmp_path):
    _write_patient(tmp_path, 1, "NOR")
    _write_patient(tmp_path, 2, "DCM", heart_slices=(0, 1, 2))
    _write_patient(tmp_path, 3, "RV")
    return tmp_path


def test_binary_slices_masks_and_weights(acdc):
    data = load_acdc(acdc, size=(32, 48), field_of_view_mm=None)
    # (2 + 3 + 2) heart slices per frame, two frames.
    assert data["images"].shape == (14, 32, 48, 1)
    assert data["heart"].shape == (14, 32, 48)
    assert data["labels"].tolist() == [0] * 4 + [1] * 10
    assert data["heart"].reshape(14, -1).max(axis=1).min() == 1
    assert data["images"].max() <= 255 and data["images"].min() >= 0
    # n / (classes * count): 14 / (2 * 4) and 14 / (2 * 10).
    assert data["class_weight"] == pytest.approx({0: 1.75, 1: 0.7})
    assert set(data["frames"]) == {"ED", "ES"}


def test_heart_mask_is_labels_one_to_three(acdc):
    data = load_acdc(acdc, size=(30, 40), frames=("ED",), field_of_view_mm=None)  # native grid
    # Rows are y, columns x: the LV+myocardium block spans x 10-19, y 8-15, RV x 22-25.
    heart = data["heart"][0]
    assert heart.sum() == 10 * 8 + 4 * 4
    assert heart[8:16, 10:20].all() and heart[10:14, 22:26].all()


def test_five_classes(acdc):
    data = load_acdc(acdc, size=(32, 32), task="5class")
    assert sorted(set(data["labels"].tolist())) == [0, 2, 4]
    assert data["classes"][2] == "DCM"
    four = load_acdc(acdc, size=(32, 32), task="4class")
    # FOUR_CLASSES = NOR, RV, HCM, DCM: patient 1 NOR, 2 DCM, 3 RV.
    assert four["classes"] == ("NOR", "RV", "HCM", "DCM")
    assert sorted(set(four["labels"].tolist())) == [0, 1, 3]


def test_class_weights_by_hand():
    assert class_weights([0, 0, 0, 1], 2) == pytest.approx({0: 4 / 6, 1: 2.0})
    assert class_weights([0, 0], 3)[2] == 0.0


def test_info_cfg_errors(tmp_path):
    path = tmp_path / "Info.cfg"
    with pytest.raises(FileNotFoundError, match="Info.cfg"):
        read_info_cfg(path)
    path.write_text("ED: 1\nGroup: NOR\n")
    with pytest.raises(ValueError, match="'ES'"):
        read_info_cfg(path)
    path.write_text("ED: 1\nES: 2\nGroup: XYZ\n")
    with pytest.raises(ValueError, match="Group"):
        read_info_cfg(path)
    path.write_text("ED: one\nES: 2\nGroup: NOR\n")
    with pytest.raises(ValueError, match="'ED'"):
        read_info_cfg(path)


def test_missing_and_mismatched_files(tmp_path):
    folder = _write_patient(tmp_path, 4, "HCM")
    (folder / "patient004_frame03_gt.nii.gz").unlink()
    with pytest.raises(FileNotFoundError, match="patient004_frame03_gt.nii.gz"):
        load_acdc(tmp_path)
    nib.save(nib.Nifti1Image(np.zeros((5, 5, 4), np.uint8), np.eye(4)),
             folder / "patient004_frame03_gt.nii.gz")
    with pytest.raises(ValueError, match="patient004_frame03_gt.nii.gz.*does not match"):
        load_acdc(tmp_path)


def test_bad_labels_and_empty_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="no patientNNN"):
        load_acdc(tmp_path)
    folder = _write_patient(tmp_path, 5, "NOR")
    gt = np.full((40, 30, 4), 7, np.uint8)
    nib.save(nib.Nifti1Image(gt, np.eye(4)), folder / "patient005_frame01_gt.nii.gz")
    with pytest.raises(ValueError, match="patient005_frame01_gt.nii.gz: labels must be 0-3"):
        load_acdc(tmp_path)
    with pytest.raises(ValueError, match="task"):
        load_acdc(tmp_path, task="3class")


def test_millimetre_grid_by_hand():
    # 2 x 3 pixels of 2 mm (x) by 1 mm (y): 2 mm rows stay, columns double to 6 mm.
    image = np.array([[[1, 2, 3], [4, 5, 6]]], np.uint8)
    out = to_millimetre_grid(image, (2.0, 1.0), (2, 6), nearest=True)
    assert out.tolist() == [[[1, 1, 2, 2, 3, 3], [4, 4, 5, 5, 6, 6]]]
    # A window larger than the image pads with zeros around the centre.
    padded = to_millimetre_grid(image, (1.0, 1.0), (4, 5), nearest=True)
    assert padded[0, 1:3, 1:4].tolist() == [[1, 2, 3], [4, 5, 6]] and padded.sum() == 21
    # A smaller window crops the centre.
    assert to_millimetre_grid(image, (1.0, 1.0), (1, 1), nearest=True).tolist() == [[[2]]]


def test_spacing_sets_the_heart_size_in_millimetres(tmp_path):
    # The same voxel block at 1 mm and at 2 mm spacing: twice the extent in mm.
    _write_patient(tmp_path / "a", 1, "NOR", spacing=(1.0, 1.0))
    _write_patient(tmp_path / "b", 1, "NOR", spacing=(2.0, 2.0))
    fine = load_acdc(tmp_path / "a", size=(60, 80), field_of_view_mm=(60, 80), frames=("ED",))
    coarse = load_acdc(tmp_path / "b", size=(60, 80), field_of_view_mm=(60, 80), frames=("ED",))
    assert coarse["heart"][0].sum() == pytest.approx(4 * fine["heart"][0].sum(), rel=0.1)


def test_patient_level_split_keeps_patients_apart():
    patients = [f"patient{i:03d}" for i in range(1, 21)]
    groups = ["NOR", "MINF", "DCM", "HCM", "RV"] * 4
    parts = split_patients(patients, groups, seed=3)
    sets = [set(v) for v in parts.values()]
    assert sum(len(s) for s in sets) == 20 and set.union(*sets) == set(patients)
    assert all(not (a & b) for i, a in enumerate(sets) for b in sets[i + 1:])
    assert len(parts["test"]) == 5 and len(parts["val"]) == 5  # one per group each
    assert parts == split_patients(patients, groups, seed=3)
    assert parts != split_patients(patients, groups, seed=4)


def test_acdc_splits_share_no_patient(tmp_path):
    for i, group in enumerate(["NOR"] * 3 + ["DCM"] * 3, start=1):
        _write_patient(tmp_path, i, group)
    splits, source, classes, weights = acdc_splits(tmp_path, size=(32, 40), seed=0)
    assert classes == ("normal", "diseased")
    assert {len(source["patients"])} == {2}
    total = sum(len(s["labels"]) for s in splits.values())
    assert total == 6 * 2 * 2  # two heart slices in each of two frames
    assert set(np.unique(splits["test"]["labels"])) == {0, 1}


def test_bad_patient_is_skipped_on_request(tmp_path):
    _write_patient(tmp_path, 1, "NOR")
    bad = _write_patient(tmp_path, 2, "DCM")
    path = bad / "patient002_frame01.nii.gz"
    path.write_bytes(path.read_bytes()[:40])  # truncated
    with pytest.raises(ValueError, match="patient002_frame01.nii.gz: cannot read"):
        load_acdc(tmp_path)
    data = load_acdc(tmp_path, skip_bad_patients=True)
    assert set(data["patients"]) == {"patient001"}
    assert data["skipped"][0][0] == "patient002" and "cannot read" in data["skipped"][0][1]


def test_nan_voxels_are_refused(tmp_path):
    folder = _write_patient(tmp_path, 1, "NOR")
    image = np.ones((40, 30, 4), np.float32)
    image[3, 4, 1] = np.nan
    nib.save(nib.Nifti1Image(image, np.eye(4)), folder / "patient001_frame03.nii.gz")
    with pytest.raises(ValueError, match=r"patient001_frame03.nii.gz: voxel \(3, 4, 1\) is NaN"):
        load_acdc(tmp_path)


def test_info_cfg_with_byte_order_mark(tmp_path):
    path = tmp_path / "Info.cfg"
    path.write_bytes("\ufeffED: 1\nES: 12\nGroup: HCM\n".encode("utf-8"))
    assert read_info_cfg(path)["ED"] == 1

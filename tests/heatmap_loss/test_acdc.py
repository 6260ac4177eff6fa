import nibabel as nib
import numpy as np
import pytest

from heatmap_loss.acdc import class_weights, load_acdc, read_info_cfg


def _write_patient(root, number, group, *, heart_slices=(1, 2), shape=(40, 30, 4), ed=1, es=3):
    folder = root / f"patient{number:03d}"
    folder.mkdir(parents=True)
    (folder / "Info.cfg").write_text(f"ED: {ed}\nES: {es}\nGroup: {group}\nHeight: 180.0\n"
                                     "NbFrame: 10\nWeight: 80.0\n")
    rng = np.random.default_rng(number)
    for frame in (ed, es):
        image = rng.uniform(0, 500, shape).astype(np.float32)
        gt = np.zeros(shape, dtype=np.uint8)
        for z in heart_slices:
            gt[10:20, 8:16, z] = 2  # myocardium
            gt[12:18, 10:14, z] = 3  # LV cavity
            gt[22:26, 10:14, z] = 1  # RV cavity
        nib.save(nib.Nifti1Image(image, np.eye(4)), folder / f"patient{number:03d}_frame{frame:02d}.nii.gz")
        nib.save(nib.Nifti1Image(gt, np.eye(4)), folder / f"patient{number:03d}_frame{frame:02d}_gt.nii.gz")
    return folder


@pytest.fixture
def acdc(tmp_path):
    _write_patient(tmp_path, 1, "NOR")
    _write_patient(tmp_path, 2, "DCM", heart_slices=(0, 1, 2))
    _write_patient(tmp_path, 3, "RV")
    return tmp_path


def test_binary_slices_masks_and_weights(acdc):
    data = load_acdc(acdc, size=(32, 48))
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
    data = load_acdc(acdc, size=(30, 40), frames=("ED",))  # native grid, no resizing
    # Rows are y, columns x: the LV+myocardium block spans x 10-19, y 8-15, RV x 22-25.
    heart = data["heart"][0]
    assert heart.sum() == 10 * 8 + 4 * 4
    assert heart[8:16, 10:20].all() and heart[10:14, 22:26].all()


def test_five_classes(acdc):
    data = load_acdc(acdc, size=(32, 32), task="5class")
    assert sorted(set(data["labels"].tolist())) == [0, 2, 4]
    assert data["classes"][2] == "DCM"


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

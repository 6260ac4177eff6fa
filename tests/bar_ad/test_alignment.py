"""The loader's alignment check (shift, rotation, mirror, header placement), groups and
duplicates of the collection CSV, and non-finite voxels."""

import shutil

import nibabel as nib
import numpy as np
import pytest

from bar_ad.alignment import (antisymmetric_part, axis_rotation, measure_misalignment,
                              mirror_scores, reference_for)
from bar_ad.atlas import load_atlas
from bar_ad.config import get_config
from bar_ad.data import load_adni, load_volume, read_collection, read_collection_csv
from bar_ad.experiment import generate_cohort

pytestmark = pytest.mark.no_keras

BRAIN_CENTRE_MM = np.array([0.0, -18.0, 7.0])


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    root = tmp_path_factory.mktemp("adni_tiny")
    generate_cohort(get_config("tiny"), root, seed=0)
    return root


@pytest.fixture
def cohort(written, tmp_path):
    root = tmp_path / "adni"
    shutil.copytree(written, root)
    return root


def _scans(root):
    return sorted((root / "ADNI").rglob("*.nii"))


def _rewrite(path, data=None, affine=None):
    img = nib.load(str(path), mmap=False)
    data = np.asarray(img.dataobj) if data is None else data
    nib.save(nib.Nifti1Image(data, img.affine if affine is None else affine), str(path))


def _rotated(affine, axis, degrees, centre=BRAIN_CENTRE_MM):
    """The affine of the same voxels turned by `degrees` about `centre` (world axes)."""
    r = axis_rotation(axis, degrees)
    out = np.array(affine, float)
    out[:3, :3] = r @ out[:3, :3]
    out[:3, 3] = r @ (out[:3, 3] - centre) + centre
    return out


def test_axis_rotation_by_hand():
    np.testing.assert_allclose(axis_rotation(2, 90) @ [1, 0, 0], [0, 1, 0], atol=1e-12)
    np.testing.assert_allclose(axis_rotation(0, 90) @ [0, 1, 0], [0, 0, 1], atol=1e-12)


def test_measured_shift_and_rotation_of_the_template():
    ref = reference_for("auto")
    template, affine = ref.check.template, ref.check.affine
    found = measure_misalignment(template, affine, ref)
    assert found["shift_mm"] < 0.5 and found["rotation_deg"] < 1.5
    moved = affine.copy()
    moved[:3, 3] += [0.0, 8.0, 0.0]
    found = measure_misalignment(template, moved, ref)
    np.testing.assert_allclose(found["shift_xyz_mm"], [0, 8, 0], atol=1.0)
    found = measure_misalignment(template, _rotated(affine, 0, 10.0, ref.centre), ref)
    assert found["shift_mm"] < 1.0
    assert found["rotation_xyz_deg"][0] == pytest.approx(10.0, abs=2.0)
    assert abs(found["rotation_xyz_deg"][1]) < 1.5 and abs(found["rotation_xyz_deg"][2]) < 1.5


def test_mirror_scores_by_hand():
    # v_i = s + a_i p with s symmetric and p antisymmetric: anti(v_i) = 2 a_i p, so the
    # score is the sign of a_i times the sign of the others' mean a: exactly +1 or -1.
    rng = np.random.default_rng(0)
    half = rng.random((3, 4, 5))
    s = np.concatenate([half, half[::-1]])
    p = np.concatenate([half, -half[::-1]])
    np.testing.assert_allclose(antisymmetric_part(p), 2 * p)
    np.testing.assert_allclose(antisymmetric_part(s), 0)
    a = [1.0, 0.5, 2.0, -1.0]
    scores = mirror_scores(np.stack([s + k * p for k in a]))
    np.testing.assert_allclose(scores, [1, 1, 1, -1], atol=1e-6)
    with pytest.raises(ValueError, match="at least 3"):
        mirror_scores(np.stack([s, s]))


def test_aligned_cohort_loads_with_measurements(cohort):
    data = load_adni(cohort, load_atlas(16))
    m = data["misalignment"]
    assert max(m["shift_mm"]) < 3.0 and max(m["rotation_deg"]) < 3.5
    assert min(m["mirror_score"]) > 0


@pytest.mark.parametrize("mm", [5.0, 10.0, 20.0])
def test_shifted_scan_is_refused(cohort, mm):
    path = _scans(cohort)[1]
    affine = nib.load(str(path), mmap=False).affine.copy()
    affine[1, 3] += mm
    _rewrite(path, affine=affine)
    with pytest.raises(ValueError, match=rf"{path.name}: not aligned.*shifted"):
        load_volume(path, load_atlas(16))
    with pytest.raises(ValueError, match=path.name):
        load_adni(cohort, load_atlas(32))


@pytest.mark.parametrize("axis,degrees", [(0, 5.0), (1, -5.0), (2, 5.0), (2, 15.0)])
def test_rotated_scan_is_refused(cohort, axis, degrees):
    path = _scans(cohort)[2]
    _rewrite(path, affine=_rotated(nib.load(str(path), mmap=False).affine, axis, degrees))
    with pytest.raises(ValueError, match=rf"{path.name}: not aligned.*rotated"):
        load_volume(path, load_atlas(16))


def test_left_right_flipped_scan_is_refused(cohort):
    path = _scans(cohort)[3]
    affine = nib.load(str(path), mmap=False).affine.copy()
    affine[0] *= -1  # voxel i now sits at -x: the scan is the mirror image
    _rewrite(path, affine=affine)
    load_volume(path, load_atlas(16))  # the template is symmetric: one scan cannot tell
    with pytest.raises(ValueError, match=rf"{path.name}: looks left-right flipped"):
        load_adni(cohort, load_atlas(16))
    data = load_adni(cohort, load_atlas(16), check_mirror=False)
    assert np.isnan(data["misalignment"]["mirror_score"]).all()


def test_lost_header_placement_is_refused(cohort):
    path = _scans(cohort)[0]
    img = nib.load(str(path), mmap=False)
    lost = nib.Nifti1Image(np.asarray(img.dataobj), None)
    lost.header.set_zooms(img.header.get_zooms())
    nib.save(lost, str(path))
    assert int(nib.load(str(path), mmap=False).header["sform_code"]) == 0
    with pytest.raises(ValueError, match=rf"{path.name}: .*no placement"):
        load_volume(path, load_atlas(16))


@pytest.mark.parametrize("value,kind", [(np.nan, "NaN"), (np.inf, "infinite"),
                                        (-np.inf, "infinite")])
def test_non_finite_voxels_are_refused(cohort, value, kind):
    path = _scans(cohort)[0]
    data = np.asarray(nib.load(str(path), mmap=False).dataobj).astype(np.float32)
    data[3, 4, 5] = value
    _rewrite(path, data=data)
    with pytest.raises(ValueError, match=rf"{path.name}: 1 voxel\(s\) are {kind}.*\(3, 4, 5\)"):
        load_volume(path, load_atlas(16))


def _with_groups(csv_path, groups):
    lines = csv_path.read_text().splitlines()
    for k, group in groups.items():
        cells = lines[k].split(",")
        cells[2] = group
        lines[k] = ",".join(cells)
    csv_path.write_text("\n".join(lines) + "\n")


def test_subgroups_are_skipped_and_counted_or_mapped(cohort):
    csv_path = next(cohort.glob("*.csv"))
    n_rows = len(read_collection_csv(csv_path))
    _with_groups(csv_path, {1: "EMCI", 2: "LMCI", 3: "SMC", 4: "EMCI"})
    skipped = read_collection(csv_path)
    assert skipped["skipped"] == {"EMCI": 2, "LMCI": 1, "SMC": 1}
    assert len(skipped["rows"]) == n_rows - 4
    mapped = read_collection(csv_path, group_map="adni")
    assert mapped["mapped"] == {"EMCI->MCI": 2, "LMCI->MCI": 1, "SMC->CN": 1}
    assert [r["Group"] for r in mapped["rows"][:4]] == ["MCI", "MCI", "CN", "MCI"]
    data = load_adni(cohort, load_atlas(16), group_map="adni")
    assert data["mapped"]["SMC->CN"] == 1
    assert len(data["y"]) == sum(r["Group"] in ("CN", "AD") for r in mapped["rows"])
    with pytest.raises(ValueError, match="group_map must be one of"):
        read_collection(csv_path, group_map="merge")


def test_unknown_group_still_raises(cohort):
    csv_path = next(cohort.glob("*.csv"))
    _with_groups(csv_path, {2: "XYZ"})
    with pytest.raises(ValueError, match="row 3.*Group.*XYZ"):
        read_collection(csv_path)


def test_image_listed_twice_is_refused(cohort):
    csv_path = next(cohort.glob("*.csv"))
    lines = csv_path.read_text().splitlines()
    lines.append(lines[2])
    csv_path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=rf"rows 3 and {len(lines)}: .*listed twice"):
        read_collection(csv_path)

"""Atlas loading and merging, the ADNI layout writer/loader, subject-level folds, errors."""

import csv

import numpy as np
import pytest

from bar_ad.atlas import (alignment_score, check_aligned, grid_affine, load_atlas,
                          merge_hemispheres, read_label_table, resample)
from bar_ad.data import (find_scan_file, load_adni, load_volume, read_collection_csv,
                         subject_folds, subject_holdout, write_adni_cohort)
from bar_ad.phantom import CohortGenerator, CohortSpec


def test_merge_hemispheres_by_hand():
    table = {11: "Hippocampus_L", 12: "Hippocampus_R", 21: "Vermis_3", 31: "Amygdala_L",
             32: "Amygdala_R"}
    vol = np.array([[[0, 11, 12], [21, 31, 32]]])
    merged, names = merge_hemispheres(vol, table)
    assert names == ("Hippocampus", "Vermis_3", "Amygdala")
    np.testing.assert_array_equal(merged, [[[0, 1, 1], [2, 3, 3]]])


def test_atlas_with_missing_or_unknown_labels_raises():
    table = {1: "A_L", 2: "A_R", 3: "B"}
    with pytest.raises(ValueError, match="missing labels.*3=B"):
        merge_hemispheres(np.array([[[0, 1, 2]]]), table, path="toy.nii")
    with pytest.raises(ValueError, match="toy.nii.*\\[7\\]"):
        merge_hemispheres(np.array([[[0, 1, 2, 3, 7]]]), table, path="toy.nii")


def test_read_label_table_formats(tmp_path):
    (tmp_path / "l.csv").write_text("index,name\n2001,Precentral_L\n2002,Precentral_R\n")
    assert read_label_table(tmp_path / "l.csv") == {2001: "Precentral_L", 2002: "Precentral_R"}
    (tmp_path / "aal.nii.txt").write_text("1 Precentral_L 2001\n2 Precentral_R 2002\n")
    assert read_label_table(tmp_path / "aal.nii.txt") == {1: "Precentral_L", 2: "Precentral_R"}
    (tmp_path / "bad.csv").write_text("id,label\n1,x\n")
    with pytest.raises(ValueError, match="bad.csv"):
        read_label_table(tmp_path / "bad.csv")


def test_resample_shift_by_one_voxel():
    vol = np.zeros((6, 6, 6), np.float32)
    vol[2, 3, 4] = 1.0
    src = np.eye(4)
    dst = np.eye(4)
    dst[:3, 3] = 1.0  # target voxel k sits at source voxel k + 1
    out = resample(vol, src, dst, (6, 6, 6), order=1)
    assert out[1, 2, 3] == pytest.approx(1.0) and out.sum() == pytest.approx(1.0)


def test_load_atlas_on_small_grid():
    atlas = load_atlas(24)
    assert atlas.shape == (24, 24, 24)
    assert 55 <= atlas.num_regions <= 64  # AAL2: 120 regions -> 64 merged (some may vanish)
    assert set(np.unique(atlas.labels)) == set(range(atlas.num_regions + 1))
    assert np.array_equal(atlas.labels > 0, atlas.brain_mask)  # regions tile the brain
    assert atlas.template.min() >= 0 and atlas.template.max() <= 1
    assert atlas.region_label("Hippocampus") > 0
    np.testing.assert_allclose(grid_affine((24, 24, 24))[:3, :3], atlas.affine[:3, :3])
    check_aligned(np.zeros((2, 24, 24, 24, 1)), atlas)
    with pytest.raises(ValueError, match="scan.nii.*not aligned with the atlas grid"):
        check_aligned(np.zeros((2, 20, 24, 24, 1)), atlas, name="scan.nii")
    with pytest.raises(ValueError, match="not in this atlas"):
        atlas.region_label("Nowhere")


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    root = tmp_path_factory.mktemp("adni")
    gen_atlas = load_atlas((20, 24, 20))
    spec = CohortSpec(n_ad=2, n_cn=3, n_mci=1, scans_per_subject=(1, 2))
    csv_path = write_adni_cohort(root, CohortGenerator(gen_atlas, spec).subjects(0), gen_atlas)
    return root, csv_path


def test_written_layout_and_csv(cohort):
    root, csv_path = cohort
    rows = read_collection_csv(csv_path)
    with open(csv_path) as fh:
        header = next(csv.reader(fh))
    assert header == ["Image Data ID", "Subject", "Group", "Sex", "Age", "Visit", "Modality",
                      "Description", "Type", "Acq Date", "Format", "Downloaded"]
    assert {r["Group"] for r in rows} == {"AD", "CN", "MCI"}
    path = find_scan_file(root, rows[0]["Subject"], rows[0]["Image Data ID"])
    rel = path.relative_to(root).parts
    assert rel[0] == "ADNI" and rel[1] == rows[0]["Subject"] and rel[4] == rows[0]["Image Data ID"]
    assert path.name.startswith(f"ADNI_{rows[0]['Subject']}_MR_")
    assert path.name.endswith(f"_{rows[0]['Image Data ID']}.nii")


def test_load_adni_and_subject_folds(cohort):
    root, _ = cohort
    atlas = load_atlas(16)
    data = load_adni(root, atlas)
    assert data["x"].shape[1:] == (16, 16, 16, 1) and data["x"].dtype == np.float32
    assert 0 <= data["x"].min() and data["x"].max() <= 1
    assert set(data["y"]) == {0, 1}  # MCI dropped
    folds = subject_folds(data["subjects"], data["y"], n_folds=2, seed=0)
    seen = []
    for train, test in folds:
        assert not set(data["subjects"][train]) & set(data["subjects"][test])
        seen += test.tolist()
    assert sorted(seen) == list(range(len(data["y"])))
    tr, val = subject_holdout(np.arange(len(data["y"])), data["subjects"], data["y"],
                              fraction=0.5, seed=0)
    assert not set(data["subjects"][tr]) & set(data["subjects"][val])
    with pytest.raises(ValueError, match="n_folds"):
        subject_folds(data["subjects"], data["y"], n_folds=50)


def test_csv_group_outside_the_known_groups_raises(cohort, tmp_path):
    _, csv_path = cohort
    lines = csv_path.read_text().splitlines()
    lines[2] = lines[2].replace(",AD,", ",ADX,").replace(",CN,", ",ADX,").replace(",MCI,", ",ADX,")
    bad = tmp_path / "bad.csv"
    bad.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match="bad.csv, row 3.*Group.*ADX"):
        read_collection_csv(bad)
    (tmp_path / "nogroup.csv").write_text("Image Data ID,Subject\nI1,002_S_0001\n")
    with pytest.raises(ValueError, match="missing column"):
        read_collection_csv(tmp_path / "nogroup.csv")
    with pytest.raises(FileNotFoundError):
        read_collection_csv(tmp_path / "absent.csv")


def test_missing_scan_and_misaligned_volume(cohort, tmp_path):
    import nibabel as nib

    root, csv_path = cohort
    with pytest.raises(FileNotFoundError, match="I999"):
        find_scan_file(root, "002_S_9999", "I999")
    rows = read_collection_csv(csv_path)
    path = find_scan_file(root, rows[0]["Subject"], rows[0]["Image Data ID"])
    atlas = load_atlas(16)
    assert alignment_score(load_volume(path, atlas), atlas) > 0.9
    img = nib.load(str(path))
    shifted = img.affine.copy()
    shifted[1, 3] += 60.0  # 6 cm off: not registered to the atlas
    bad = tmp_path / "shifted.nii"
    nib.save(nib.Nifti1Image(np.asarray(img.dataobj), shifted), str(bad))
    with pytest.raises(ValueError, match="shifted.nii.*not aligned with the atlas"):
        load_volume(bad, atlas)
    flat = tmp_path / "flat.nii"
    nib.save(nib.Nifti1Image(np.zeros((4, 4), np.int16), np.eye(4)), str(flat))
    with pytest.raises(ValueError, match="flat.nii.*3D"):
        load_volume(flat, atlas)


def test_generator_is_seeded_and_ad_shows_atrophy():
    atlas = load_atlas((20, 24, 20))
    spec = CohortSpec(n_ad=2, n_cn=2, scans_per_subject=(1, 1), noise_std=0.0, deform_mm=0.0,
                      gain_std=0.0, bias_std=0.0, severity=(1.0, 1.0), age_std=0.0)
    a = list(CohortGenerator(atlas, spec).subjects(3))
    b = list(CohortGenerator(atlas, spec).subjects(3))
    for s, t in zip(a, b):
        assert s.subject == t.subject and np.array_equal(s.volume, t.volume)
    hippo = atlas.labels == atlas.region_label("Hippocampus")
    ad = np.mean([s.volume[hippo].mean() for s in a if s.group == "AD"])
    cn = np.mean([s.volume[hippo].mean() for s in a if s.group == "CN"])
    assert ad < 0.8 * cn
    with pytest.raises(ValueError, match="seed"):
        next(CohortGenerator(atlas, spec).subjects(None))


def test_auto_source_prefers_the_original_aal(tmp_path, monkeypatch):
    from bar_ad import atlas as atlas_module

    assert atlas_module.atlas_files("auto")["source"].startswith("packages")  # no mricron here
    for name in ("aal.nii.gz", "aal.nii.txt", "ch2bet.nii.gz"):
        (tmp_path / name).write_bytes(b"")
    monkeypatch.setattr(atlas_module, "MRICRON_DIR", tmp_path)
    files = atlas_module.atlas_files("auto")
    assert files["atlas"] == tmp_path / "aal.nii.gz" and "62 merged" in files["source"]
    assert files["template"].name == "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"
    assert atlas_module.atlas_files("packages")["source"].startswith("packages")
    assert atlas_module.atlas_files("mricron")["template"] == tmp_path / "ch2bet.nii.gz"

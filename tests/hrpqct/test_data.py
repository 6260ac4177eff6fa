import numpy as np
import pytest

from hrpqct import aim, data

SMALL = dict(image_size=16, oversample=2, stack_slices=9, n_projections=24, field_of_view_mm=80.0,
             projection_noise=0.001, fbp_window="shepp-logan", grade_counts="uniform", rater_noise=0.3)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("hrpqct") / "d"
    return data.generate_dataset(root, scans_per_site={"radius": 3, "tibia": 2}, seed=0, **SMALL)


def test_generate_and_load(dataset):
    assert sorted(p.name for p in (dataset / "aim").iterdir())[:2] == ["rad0000.AIM", "rad0001.AIM"]
    img = aim.read_aim(dataset / "aim" / "rad0000.AIM")
    assert img.data.shape == (9, 16, 16) and img.data.dtype == np.int16
    assert img.log["Mu_Scaling"] == "8192" and img.log["Site"] == "radius"
    d = data.load_dataset(dataset, image_size=16)
    assert d["images"].shape == (5, 8, 16, 16) and d["measured"].shape == (5, 16, 16)
    # Slices 0, 1, 2, 3, 5, 6, 7, 8 of 9, in 1/cm: soft tissue about 0.2, bone up to about 0.9.
    np.testing.assert_array_equal(data.equally_spaced(9, 8), [0, 1, 2, 3, 5, 6, 7, 8])
    # At the file's own grid the field is only shifted by whole pixels to centre the limb.
    raw = data.load_scan_slices(dataset / "aim" / "rad0000.AIM")
    np.testing.assert_allclose(raw[4], img.data[5] / 8192.0, atol=1e-6)
    measured = d["measured"][0]
    assert measured.sum() >= 12 * 12 and set(np.round(d["images"][0, 4][measured], 6)) <= set(np.round(raw[4].ravel(), 6))
    assert 0.3 < d["images"].max() < 1.5
    assert set(d["sites"]) == {"radius", "tibia"}
    assert d["rater_grades"].shape == (5, 3) and np.all((d["consensus"] >= 1) & (d["consensus"] <= 5))
    assert d["qme_ssd"].shape == (5,) and np.all(np.isfinite(d["qme_ssd"]))
    with np.load(dataset / "projections" / "rad0000.npz") as z:
        # Only the views the QME reads are kept: 0 degrees, the next view, 180 degrees.
        assert z["views"].shape[:2] == (3, 9)
        np.testing.assert_allclose(z["angles"], [0.0, np.pi / 24, np.pi])
    assert d["true_grade"].shape == (5,) and d["artefact_rms"].shape == (5,)


def test_grades_table_errors(tmp_path):
    path = tmp_path / "grades.csv"
    path.write_text("scan_id,site,rater1,rater2,rater3\na,radius,1,2,\nb,tibia,3,6,3\n")
    with pytest.raises(ValueError, match=r"grades.csv, line 3 \(scan 'b'\), column 'rater2'.*1-5.*'6'"):
        data.read_grades(path)
    path.write_text("scan_id,site,rater1\na,femur,1\n")
    with pytest.raises(ValueError, match="grades.csv, line 2.*site"):
        data.read_grades(path)
    path.write_text("scan_id,site,rater1\na,radius,2.5\n")
    with pytest.raises(ValueError, match="integers 1-5"):
        data.read_grades(path)
    path.write_text("scan_id,rater1\na,1\n")
    with pytest.raises(ValueError, match="missing column 'site'"):
        data.read_grades(path)
    with pytest.raises(FileNotFoundError, match="nothing.csv"):
        data.read_grades(tmp_path / "nothing.csv")
    path.write_text("scan_id,site,rater1,rater2\na,Radius,2,\n")
    rows = data.read_grades(path)
    assert rows[0]["site"] == "radius" and rows[0]["grades"][0] == 2 and np.isnan(rows[0]["grades"][1])


def test_grades_table_refuses_duplicate_scans_and_unknown_raters(tmp_path):
    path = tmp_path / "grades.csv"
    path.write_text("scan_id,site,rater1\na,radius,1\nb,tibia,2\na,radius,3\n")
    with pytest.raises(ValueError, match=r"grades.csv, line 4, column 'scan_id': duplicate scan id 'a' "
                                         r"\(first on line 2\)"):
        data.read_grades(path)
    path.write_text("scan_id,site,rater1,rater4\na,radius,1,2\n")
    with pytest.raises(ValueError, match=r"grades.csv: unknown column\(s\) \['rater4'\]"):
        data.read_grades(path)
    path.write_text("scan_id,site,rater1,rater1\na,radius,1,2\n")
    with pytest.raises(ValueError, match="grades.csv: duplicate column names"):
        data.read_grades(path)
    path.write_text("scan_id,site,rater1,rater2\na,radius,,\n")
    with pytest.raises(ValueError, match=r"line 2 \(scan 'a'\): no rater grade"):
        data.read_grades(path)


def test_a_missing_rater_is_not_a_disagreement():
    from hrpqct.agreement import rater_agreement

    # Scan 1: raters 1 and 2 agree, rater 3 missing; scan 2: all three agree on 2.
    # Pairs graded: (1, 2) on both scans, (1, 3) and (2, 3) on scan 2 only -> 0 of 4 differ.
    g = np.array([[1, 1, np.nan], [2, 2, 2]])
    out = rater_agreement(g, np.array([1, 2]))
    assert out["pairwise_disagreement_fraction"] == 0.0
    assert out["full_agreement_fraction"] == 1.0 and out["scans_with_two_raters"] == 2
    # Grades (1, 1, 2) and (3, 3, 3): 2 of 6 pairs differ; full agreement on 1 of 2 scans.
    out = rater_agreement(np.array([[1, 1, 2], [3, 3, 3]], float), np.array([1, 3]))
    assert out["pairwise_disagreement_fraction"] == pytest.approx(1 / 3)
    assert out["full_agreement_fraction"] == 0.5 and out["any_disagreement_fraction"] == 0.5


def test_scan_errors_name_the_file(tmp_path):
    few = aim.write_aim(tmp_path / "few.AIM", np.zeros((5, 16, 16), np.int16), 0.1)
    with pytest.raises(ValueError, match="few.AIM: expected at least 8 slices. Received: 5"):
        data.load_scan_slices(few)
    mask = aim.write_aim(tmp_path / "mask.AIM", np.zeros((8, 16, 16), np.int8), 0.1)
    with pytest.raises(ValueError, match="mask.AIM: expected a grey-value scan.*int8"):
        data.load_scan_slices(mask)
    small = aim.write_aim(tmp_path / "small.AIM", np.zeros((8, 16, 12), np.int16), 0.1)
    with pytest.raises(ValueError, match="small.AIM: field 'dimensions': expected slices of at least 16 x 16"):
        data.load_scan_slices(small)
    air = aim.write_aim(tmp_path / "air.AIM", np.zeros((8, 20, 16), np.float32), 0.1)
    with pytest.raises(ValueError, match="air.AIM: field 'data': no limb"):
        data.load_scan_input(air, field_of_view_mm=2.0, image_size=16)
    ok = aim.write_aim(tmp_path / "ok.AIM", np.ones((8, 16, 20), np.float32), 0.1)
    assert data.load_scan_slices(ok).shape == (8, 16, 20)
    x, measured = data.load_scan_input(ok, field_of_view_mm=3.2, image_size=16)
    assert x.shape == (8, 16, 16) and measured.sum() == 8 * 10
    with pytest.raises(FileNotFoundError, match="gone.AIM"):
        data.load_scan_slices(tmp_path / "gone.AIM")


def test_parallel_generation_gives_the_same_cohort(dataset, tmp_path):
    # Every scan has its own seed: two worker processes write the same scans as one.
    other = data.generate_dataset(tmp_path / "p", scans_per_site={"radius": 3, "tibia": 2}, seed=0, workers=2,
                                  projections="all", **SMALL)
    for name in ("grades.csv", "simulation.csv"):
        assert (other / name).read_text() == (dataset / name).read_text()
    # The QME views kept by default are views 0, 1 and the last of the whole acquisition.
    with np.load(other / "projections" / "tib0001.npz") as full, \
            np.load(dataset / "projections" / "tib0001.npz") as kept:
        assert full["views"].shape[0] == 25
        np.testing.assert_array_equal(kept["views"], full["views"][[0, 1, 24]])
    np.testing.assert_array_equal(aim.read_aim(other / "aim" / "tib0001.AIM").data,
                                  aim.read_aim(dataset / "aim" / "tib0001.AIM").data)
    with pytest.raises(ValueError, match="workers"):
        data.generate_dataset(tmp_path / "q", scans_per_site={"radius": 1}, seed=0, workers=0, **SMALL)

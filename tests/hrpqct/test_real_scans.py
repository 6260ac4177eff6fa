"""`medrepro hrpqct run --data DIR` on AIMs as a scanner writes them: cropped to the limb, of
mixed non-square sizes and pixel sizes, without air around the limb, no projections."""

import json

import numpy as np
import pytest

from hrpqct import aim, data
from hrpqct.config import get_config
from hrpqct.scan_input import limb_centre


def _crop_to_limb(volume, pixel_mm, k, rng):
    """A rectangle inside the limb (no air), upsampled 4 or 5 times: mixed sizes and pixels."""
    mean = volume.astype(np.float32).mean(axis=0) / 8192.0
    r, c = (int(round(v)) for v in limb_centre(volume.astype(np.float32) / 8192.0, (pixel_mm, pixel_mm)))
    inside = mean > 0.15
    half_r, half_c = 2 + k % 3, 3 + (k // 3) % 3  # different shapes
    while not inside[r - half_r:r + half_r + 1, c - half_c:c + half_c + 1].all():
        if half_r == half_c == 2:
            break
        half_r, half_c = max(2, half_r - 1), max(2, half_c - 1)
    box = volume[:, r - half_r:r + half_r + 1, c - half_c:c + half_c + 1]
    factor = 4 + k % 2
    return np.kron(box, np.ones((1, factor, factor), box.dtype)), pixel_mm / factor


@pytest.mark.slow
def test_run_on_cropped_aims_of_mixed_sizes_without_air(tmp_path):
    from shared.cli.app import main

    tiny = get_config("tiny")
    root = data.generate_dataset(tmp_path / "sim", scans_per_site=tiny.sites, image_size=tiny.image_size,
                                 oversample=tiny.oversample, stack_slices=tiny.stack_slices,
                                 n_projections=tiny.n_projections, field_of_view_mm=tiny.field_of_view_mm,
                                 projection_noise=tiny.projection_noise, fbp_window=tiny.fbp_window,
                                 grade_counts=tiny.grade_counts, rater_noise=tiny.rater_noise, seed=0,
                                 projections="none")
    real = tmp_path / "real"
    (real / "aim").mkdir(parents=True)
    (real / "grades.csv").write_text((root / "grades.csv").read_text())
    rng = np.random.default_rng(0)
    shapes = set()
    for k, path in enumerate(sorted((root / "aim").iterdir())):
        img = aim.read_aim(path)
        box, pixel = _crop_to_limb(img.data, img.spacing[0], k, rng)
        shapes.add(box.shape[1:])
        aim.write_aim(real / "aim" / path.name, box, pixel, log={"Mu_Scaling": "8192"})
    assert len(shapes) >= 4
    out = tmp_path / "run"
    code = main(["hrpqct", "run", "--preset", "tiny", "--data", str(real), "--out", str(out), "--no-progress",
                 "--store", f"sqlite:///{tmp_path / 'r.sqlite'}"])
    assert code == 0
    report = (out / "report.md").read_text()
    assert "## Claims" in report and "Air-streak statistic not measured: 0 of 24 scans" in report
    protocol = json.loads((out / "protocol.json").read_text())["protocol"]
    assert "air_streak_spearman" not in [g["name"] for g in protocol["gates"]]
    assert any("0 of 24 scans show air" in d for d in protocol["deviations"])
    results = json.loads((out / "results.json").read_text())
    assert results["streak"]["scans_with_air"] == 0 and len(results["streak"]["scans_without_air"]) == 24
    claims = json.loads((out / "claims.json").read_text())
    assert claims["data"]["source"] == "user" and len(claims["claims"]) == 4

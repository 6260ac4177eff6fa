"""The simulated HR-pQCT cohort on disk, and the loader of that layout.

Layout of a dataset folder (what real data must look like to be graded here)::

    <root>/grades.csv            scan_id,site,rater1,rater2,rater3  (grades 1-5, blank = missing)
    <root>/aim/<scan_id>.AIM     reconstructed stack [z, y, x], int16, Mu_Scaling in the log
    <root>/projections/<scan_id>.npz   views [A, z, D] over 0..180 degrees inclusive (simulation only)
    <root>/simulation.csv        ground truth of the simulation: true grade, motion size (mm), events, QMEs

Simulation of one scan (`simulate_scan`): a radius or tibia phantom
(`hrpqct.phantom`), drawn on a grid `oversample` times finer than the
reconstruction; a motion trajectory whose size is drawn for the scan's true grade
(`hrpqct.motion`); parallel-beam views from 0 to 180 degrees with that rigid
motion applied view by view, plus Gaussian noise on the line integrals
(`hrpqct.tomography.forward_project`); filtered back-projection of the views
over [0, 180) degrees. Three simulated raters grade the motion size with noise,
and the QMEs (Sode et al.) come from the 0-degree, next and 180-degree views.
"""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

import numpy as np

from hrpqct import aim, motion, phantom, qme, tomography
from shared.training.seeding import numpy_rng

log = logging.getLogger(__name__)

MU_SCALING = 8192.0
RATER_COLUMNS = ("rater1", "rater2", "rater3")
GRADES_FILE = "grades.csv"
SIMULATION_FILE = "simulation.csv"


def simulate_scan(site, grade, *, image_size, oversample, stack_slices, n_projections,
                  field_of_view_mm, projection_noise, fbp_window, seed) -> dict:
    """Simulates one scan with motion of a size drawn for `grade`.

    Args:
        site: str. "radius" or "tibia".
        grade: int 1-5. True grade; the motion size is drawn in its band.
        image_size: int. Reconstruction grid.
        oversample: int. Phantom grid = image_size * oversample.
        stack_slices: int. Slices of the stack.
        n_projections: int. Views over [0, 180) degrees (one more at 180).
        field_of_view_mm: float. Width of the reconstructed field.
        projection_noise: float. Standard deviation of the noise on line integrals.
        fbp_window: str. See `hrpqct.tomography.ramp_filter`.
        seed: int or np.random.Generator.

    Returns:
        dict: ``volume`` [z, n, n] float32 (1/cm), ``sinogram`` [A+1, z, D]
        float32, ``motion_size`` (mm, RMS outline displacement, see
        `hrpqct.motion.motion_size`), ``events`` (list of str), the QMEs.
    """
    rng = numpy_rng(seed)
    fine = image_size * oversample
    pixel_cm = field_of_view_mm / 10.0 / image_size
    obj = phantom.bone_phantom(site, fine, n_slices=stack_slices, seed=rng)
    size = motion.sample_motion_size(int(grade), seed=rng)
    # The limb pivots about the middle of the field; the bone outline sits about a
    # third of the field's half-width away from it. Trajectories are in mm, so
    # the same grade moves the limb by more pixels on a finer grid.
    lever_mm = 0.35 * field_of_view_mm / 2.0
    traj = motion.sample_trajectory(n_projections + 1, size=size, lever_arm=lever_mm, seed=rng)
    n_det = tomography.default_detector_bins(fine, pixel_cm / oversample, pixel_cm)
    sino = tomography.forward_project_rigid(
        obj, n_projections, pixel_size=pixel_cm / oversample, n_detector=n_det, detector_pitch=pixel_cm,
        shift=traj.shift / 10.0, rot=traj.rot)
    angles = tomography.acquisition_angles(n_projections)
    if projection_noise > 0:
        sino = sino + rng.normal(0.0, projection_noise, size=sino.shape).astype(np.float32)
    volume = tomography.fbp(sino[:-1], n=image_size, pixel_size=pixel_cm, detector_pitch=pixel_cm,
                            window=fbp_window)
    out = {"volume": volume, "sinogram": sino.astype(np.float32), "motion_size": size,
           "events": traj.events, "angles": angles, "pixel_mm": pixel_cm * 10.0}
    out.update(qme.qme_from_sinogram(sino))
    return out


def _draw_grades(site, n, grade_counts, rng):
    if grade_counts == "thesis":
        return motion.sample_grades(site, n, seed=rng)
    if grade_counts == "uniform":
        return motion.sample_grades(site, n, seed=rng, counts=(1, 1, 1, 1, 1))
    raise ValueError(f"grade_counts must be 'thesis' or 'uniform'. Received: {grade_counts!r}")


def _simulate_and_write(job) -> dict:
    """Simulates one scan and writes its AIM file (and views); returns its simulation.csv row."""
    root, scan_id, site, grade, seed, keep_projections, kw = job
    scan = simulate_scan(site, grade, seed=seed, **kw)
    vol = np.clip(np.round(scan["volume"] * MU_SCALING), -32768, 32767).astype(np.int16)
    aim.write_aim(root / "aim" / f"{scan_id}.AIM", vol, scan["pixel_mm"],
                  log={"Mu_Scaling": f"{MU_SCALING:.0f}", "Site": site,
                       "Orig-ISQ-Dim-p": f"{kw['image_size']} {kw['image_size']} {kw['stack_slices']}"})
    if keep_projections:
        np.savez_compressed(root / "projections" / f"{scan_id}.npz", views=scan["sinogram"],
                            angles=scan["angles"], detector_pitch_mm=scan["pixel_mm"])
    return {"scan_id": scan_id, "site": site, "true_grade": grade,
            "motion_size": round(scan["motion_size"], 4), "events": "+".join(scan["events"]),
            "qme_ssd": scan["qme_ssd"], "qme_ncc": scan["qme_ncc"]}


def generate_dataset(out_dir, *, scans_per_site, image_size, oversample, stack_slices,
                     n_projections, field_of_view_mm, projection_noise, fbp_window,
                     grade_counts, rater_noise, seed, keep_projections=True, progress=None,
                     workers=1) -> Path:
    """Writes a simulated cohort in the layout of the module docstring.

    Every scan gets its own seed drawn from `seed`, so the cohort is the same
    whatever the number of workers.

    Args:
        out_dir: str or Path. Dataset folder (created).
        scans_per_site: dict site -> number of scans.
        image_size, oversample, stack_slices, n_projections, field_of_view_mm,
            projection_noise, fbp_window: see `simulate_scan`.
        grade_counts: "thesis" or "uniform". Frequencies of the true grades.
        rater_noise: float. See `hrpqct.motion.simulate_raters`.
        seed: int.
        keep_projections: bool, default True. Write the views of every scan.
        progress: callable wrapping an iterable (a progress bar), optional.
        workers: int, default 1. Processes simulating scans in parallel.

    Returns:
        The dataset folder.
    """
    if workers < 1:
        raise ValueError(f"workers must be >= 1. Received: workers={workers}")
    root = Path(out_dir)
    (root / "aim").mkdir(parents=True, exist_ok=True)
    if keep_projections:
        (root / "projections").mkdir(exist_ok=True)
    rng = numpy_rng(seed)
    plan = []
    for site, n in dict(scans_per_site).items():
        for k, g in enumerate(_draw_grades(site, int(n), grade_counts, rng)):
            plan.append((f"{site[:3]}{k:04d}", site, int(g)))
    scan_seeds = rng.integers(0, 2 ** 63 - 1, size=len(plan))
    kw = dict(image_size=image_size, oversample=oversample, stack_slices=stack_slices,
              n_projections=n_projections, field_of_view_mm=field_of_view_mm,
              projection_noise=projection_noise, fbp_window=fbp_window)
    jobs = [(root, scan_id, site, grade, int(s), keep_projections, kw)
            for (scan_id, site, grade), s in zip(plan, scan_seeds)]
    if workers == 1 or len(jobs) < 2:
        rows = map(_simulate_and_write, jobs)
        sim_rows = list(rows if progress is None else progress(rows))
    else:
        import concurrent.futures
        import multiprocessing

        # Spawned (not forked) workers: the caller may already run TensorFlow threads.
        with concurrent.futures.ProcessPoolExecutor(
                max_workers=int(workers), mp_context=multiprocessing.get_context("spawn")) as pool:
            rows = pool.map(_simulate_and_write, jobs, chunksize=max(1, len(jobs) // (8 * workers)))
            sim_rows = list(rows if progress is None else progress(rows))
    sizes = [r["motion_size"] for r in sim_rows]
    raters = motion.simulate_raters(np.asarray(sizes), seed=rng, noise=rater_noise)
    with open(root / GRADES_FILE, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(("scan_id", "site") + RATER_COLUMNS)
        for (scan_id, site, _), grades in zip(plan, raters):
            w.writerow([scan_id, site] + [int(g) for g in grades])
    with open(root / SIMULATION_FILE, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(sim_rows[0]))
        w.writeheader()
        w.writerows(sim_rows)
    (root / "dataset.json").write_text(json.dumps({
        "image_size": image_size, "stack_slices": stack_slices, "n_projections": n_projections,
        "field_of_view_mm": field_of_view_mm, "scans": len(plan), "seed": seed}, indent=2))
    return root


def read_grades(path) -> list[dict]:
    """Reads a grades table: scan_id, site (radius|tibia), up to three rater columns.

    Returns:
        list of dicts with ``scan_id``, ``site`` and ``grades`` (list of 3
        floats, NaN where a rater is missing).

    Raises:
        FileNotFoundError: no such file.
        ValueError: a missing column, an unknown site, a grade that is not an
            integer 1-5, or a scan without any grade; the message names the file,
            the row and the column.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"grades table not found: {path}")
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        fields = reader.fieldnames or []
        for col in ("scan_id", "site"):
            if col not in fields:
                raise ValueError(f"{path}: missing column {col!r}; expected scan_id, site, rater1..rater3. "
                                 f"Received columns: {fields}")
        raters = [c for c in RATER_COLUMNS if c in fields]
        if not raters:
            raise ValueError(f"{path}: no rater column; expected at least one of {RATER_COLUMNS}")
        rows = []
        for line, row in enumerate(reader, start=2):
            site = (row["site"] or "").strip().lower()
            if site not in phantom.SITES:
                raise ValueError(f"{path}, line {line} (scan {row['scan_id']!r}): site must be "
                                 f"'radius' or 'tibia'. Received: {row['site']!r}")
            grades = []
            for col in RATER_COLUMNS:
                text = (row.get(col) or "").strip()
                if not text:
                    grades.append(np.nan)
                    continue
                try:
                    value = float(text)
                except ValueError:
                    value = np.nan
                if not (value in (1, 2, 3, 4, 5)):
                    raise ValueError(f"{path}, line {line} (scan {row['scan_id']!r}), column {col!r}: "
                                     f"grades must be integers 1-5. Received: {text!r}")
                grades.append(value)
            if all(np.isnan(grades)):
                raise ValueError(f"{path}, line {line} (scan {row['scan_id']!r}): no rater grade")
            rows.append({"scan_id": row["scan_id"].strip(), "site": site, "grades": grades})
    if not rows:
        raise ValueError(f"{path}: no scans listed")
    return rows


def equally_spaced(n_total: int, n: int) -> np.ndarray:
    """Indices of `n` equally spaced slices of a stack of `n_total` (first and last included)."""
    if n_total < n:
        raise ValueError(f"need at least {n} slices. Received: {n_total}")
    return np.round(np.linspace(0, n_total - 1, n)).astype(int)


def load_scan_slices(path, *, slices_per_scan=8, image_size=None, backend="auto") -> np.ndarray:
    """Reads an AIM stack and returns `slices_per_scan` equally spaced slices (1/cm).

    Args:
        path: str or Path. AIM file.
        slices_per_scan: int, default 8 (thesis).
        image_size: int, optional. Expected in-plane size (y = x); checked when given.
        backend: str. See `hrpqct.aim.read_aim`.

    Returns:
        float32 array [slices_per_scan, y, x] of attenuation (raw values divided
        by the log's ``Mu_Scaling`` when present).

    Raises:
        ValueError: not a 3D grey-value volume (int16/int32/float32), the wrong
            in-plane size, or fewer slices than `slices_per_scan`; names the file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"AIM file not found: {path}")
    img = aim.read_aim(path, backend=backend)
    data = np.asarray(img.data)
    if data.ndim != 3:
        raise ValueError(f"{path}: expected a 3D stack [z, y, x]. Received: shape={data.shape}")
    if data.dtype.kind not in "if" or data.dtype.itemsize < 2:
        raise ValueError(f"{path}: expected a grey-value scan (int16, int32 or float32). "
                         f"Received: dtype={data.dtype} (a segmented or binary AIM?)")
    if data.shape[1] != data.shape[2]:
        raise ValueError(f"{path}: expected square slices. Received: y x x = {data.shape[1]} x {data.shape[2]}")
    if image_size is not None and data.shape[1] != image_size:
        raise ValueError(f"{path}: expected {image_size} x {image_size} slices. "
                         f"Received: {data.shape[1]} x {data.shape[2]}")
    if data.shape[0] < slices_per_scan:
        raise ValueError(f"{path}: expected at least {slices_per_scan} slices. Received: {data.shape[0]}")
    picked = data[equally_spaced(data.shape[0], slices_per_scan)].astype(np.float32)
    scale = img.log.get("Mu_Scaling")
    if scale is not None:
        picked = picked / float(scale)
    return picked


def load_dataset(root, *, slices_per_scan=8, image_size=None, backend="auto") -> dict:
    """Loads a dataset folder: the graded slices, the grades and (when present) the QMEs.

    Args:
        root: str or Path. Folder with grades.csv and aim/.
        slices_per_scan: int, default 8.
        image_size: int, optional. Expected slice size.
        backend: str. AIM reader backend.

    Returns:
        dict: ``images`` [N, S, y, x] float32, ``scan_ids``, ``sites`` (arrays
        of str), ``rater_grades`` [N, 3] float (NaN = missing), ``consensus`` [N]
        int (rounded mean), and when the folder holds projections ``qme_ssd``,
        ``qme_ncc`` [N]; from simulation.csv ``true_grade`` and ``motion_size``.
    """
    root = Path(root)
    rows = read_grades(root / GRADES_FILE)
    images = np.stack([load_scan_slices(root / "aim" / f"{r['scan_id']}.AIM", slices_per_scan=slices_per_scan,
                                        image_size=image_size, backend=backend) for r in rows])
    out = {"images": images, "scan_ids": np.array([r["scan_id"] for r in rows]),
           "sites": np.array([r["site"] for r in rows]),
           "rater_grades": np.array([r["grades"] for r in rows], dtype=float)}
    out["consensus"] = motion.consensus(out["rater_grades"])
    proj = root / "projections"
    if proj.is_dir():
        qmes = []
        for r in rows:
            f = proj / f"{r['scan_id']}.npz"
            if not f.is_file():
                raise FileNotFoundError(f"projections of scan {r['scan_id']!r} not found: {f}")
            with np.load(f) as z:
                qmes.append(qme.qme_from_sinogram(z["views"]))
        out["qme_ssd"] = np.array([q["qme_ssd"] for q in qmes])
        out["qme_ncc"] = np.array([q["qme_ncc"] for q in qmes])
    sim = root / SIMULATION_FILE
    if sim.is_file():
        with open(sim, newline="") as fh:
            truth = {r["scan_id"]: r for r in csv.DictReader(fh)}
        out["true_grade"] = np.array([int(truth[r["scan_id"]]["true_grade"]) for r in rows])
        out["motion_size"] = np.array([float(truth[r["scan_id"]]["motion_size"]) for r in rows])
    return out

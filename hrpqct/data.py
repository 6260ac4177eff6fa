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
import io
import logging
import re
import zipfile
from pathlib import Path

import numpy as np

from hrpqct import aim, motion, phantom, qme, raters, tomography
from hrpqct.scan_input import MIN_SLICE_PIXELS, LimbNotFound, model_input
from shared.inputs import check_npz, read_table
from shared.io.atomic import atomic_path, write_json, write_text
from shared.training.seeding import numpy_rng

log = logging.getLogger(__name__)

MU_SCALING = 8192.0
RATER_COLUMNS = ("rater1", "rater2", "rater3")
GRADES_FILE = "grades.csv"
SIMULATION_FILE = "simulation.csv"
_SCAN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def simulate_scan(site, grade, *, image_size, oversample, stack_slices, n_projections,
                  field_of_view_mm, projection_noise, fbp_window, seed, artefact_slices=8) -> dict:
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
        artefact_slices: int, default 8. The artefact measure is taken on this
            many equally spaced slices (the slices that are graded).

    Returns:
        dict: ``volume`` [z, n, n] float32 (1/cm), ``sinogram`` [A+1, z, D]
        float32, ``motion_size`` (mm, RMS outline displacement, see
        `hrpqct.motion.motion_size`), ``artefact_rms`` (1/cm, see
        `artefact_rms`), ``events`` (list of str), the QMEs.
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
    sino, still = tomography.forward_project_rigid(
        obj, n_projections, pixel_size=pixel_cm / oversample, n_detector=n_det, detector_pitch=pixel_cm,
        shift=traj.shift / 10.0, rot=traj.rot, return_still=True)
    del obj
    angles = tomography.acquisition_angles(n_projections)
    # What the motion alone adds to the image: FBP is linear, so the reconstruction minus
    # the motion-free one is the FBP of the views' difference (the noise cancels).
    graded = equally_spaced(stack_slices, min(int(artefact_slices), stack_slices))
    difference = sino[:-1, graded] - still[:, graded]
    del still
    if projection_noise > 0:
        sino += rng.normal(0.0, projection_noise, size=sino.shape).astype(np.float32)
    # One back-projection for the stack and the artefact slices (the paper preset builds its
    # back-projection matrix chunk by chunk, once per call).
    both = tomography.fbp(np.concatenate([sino[:-1], difference], axis=1), n=image_size, pixel_size=pixel_cm,
                          detector_pitch=pixel_cm, window=fbp_window)
    volume, error = both[:stack_slices], both[stack_slices:]
    del both, difference
    out = {"volume": volume, "sinogram": sino, "motion_size": size, "artefact_rms": artefact_rms(error),
           "events": traj.events, "angles": angles, "pixel_mm": pixel_cm * 10.0}
    out.update(qme.qme_from_sinogram(sino))
    return out


def artefact_rms(error) -> float:
    """Root mean square (1/cm) of a motion artefact image [slices, n, n] over the inscribed disc.

    The artefact image is the reconstruction minus the motion-free reconstruction of the
    same scan: streaks, blurring and doubled edges, what a rater reads. The disc inscribed
    in the grid is the scanner's field of view (its corners hold no views' support).

    Example:
        An error of 0.01 / cm everywhere -> 0.01.
    """
    error = np.asarray(error, dtype=np.float32)
    n = error.shape[-1]
    c = (np.arange(n) - (n - 1) / 2.0) / (n / 2.0)
    disc = (c[:, None] ** 2 + c[None, :] ** 2) <= 1.0
    return float(np.sqrt(np.mean(error[:, disc].astype(np.float64) ** 2)))


def _draw_grades(site, n, grade_counts, rng):
    if grade_counts == "thesis":
        return motion.sample_grades(site, n, seed=rng)
    if grade_counts == "uniform":
        return motion.sample_grades(site, n, seed=rng, counts=(1, 1, 1, 1, 1))
    raise ValueError(f"grade_counts must be 'thesis' or 'uniform'. Received: {grade_counts!r}")


PROJECTION_MODES = ("qme", "all", "none")


def _simulate_and_write(job) -> dict:
    """Simulates one scan and writes its AIM file (and views); returns its simulation.csv row."""
    root, scan_id, site, grade, seed, projections, kw, written_slices = job
    scan = simulate_scan(site, grade, seed=seed, **kw)
    vol = np.clip(np.round(scan.pop("volume") * MU_SCALING), -32768, 32767).astype(np.int16)
    if written_slices is not None and written_slices != len(vol):
        # A smoke run simulates only the graded slices and writes the full stack height:
        # every written slice is its nearest graded slice, so the loader reads them back.
        graded = equally_spaced(written_slices, len(vol))
        nearest = np.abs(np.arange(written_slices)[:, None] - graded[None, :]).argmin(axis=1)
        vol = vol[nearest]
    aim.write_aim(root / "aim" / f"{scan_id}.AIM", vol, scan["pixel_mm"],
                  log={"Mu_Scaling": f"{MU_SCALING:.0f}", "Site": site,
                       "Orig-ISQ-Dim-p": f"{kw['image_size']} {kw['image_size']} {kw['stack_slices']}"})
    del vol
    if projections != "none":
        # The QME reads the 0-degree view, its neighbour and the 180-degree view: keeping only
        # those saves 250 times the space at the paper preset (751 views of 168 x 728).
        keep = slice(None) if projections == "all" else [0, 1, len(scan["sinogram"]) - 1]
        np.savez_compressed(root / "projections" / f"{scan_id}.npz", views=scan["sinogram"][keep],
                            angles=scan["angles"][keep], detector_pitch_mm=scan["pixel_mm"])
    return {"scan_id": scan_id, "site": site, "true_grade": grade,
            "motion_size": round(scan["motion_size"], 4), "artefact_rms": float(f"{scan['artefact_rms']:.6g}"),
            "events": "+".join(scan["events"]), "qme_ssd": scan["qme_ssd"], "qme_ncc": scan["qme_ncc"],
            "qme_ncc_printed": scan["qme_ncc_printed"]}


def _target_counts(site, grade_counts):
    return motion.THESIS_GRADE_COUNTS[site] if grade_counts == "thesis" else (1, 1, 1, 1, 1)


def rate_cohort(sites, measure, *, grade_counts, rater_noise, seed) -> tuple:
    """Simulated raters' grades of a cohort from its artefact measure, edges calibrated per site.

    Args:
        sites: str array [n].
        measure: float array [n]. Artefact measure (`artefact_rms`, 1/cm).
        grade_counts: "thesis" or "uniform". Consensus frequencies the edges are calibrated to.
        rater_noise: float. Log-normal perception noise (`hrpqct.raters.perceive`).
        seed: int or np.random.Generator.

    Returns:
        (int array [n, 3] of grades, dict site -> list of 4 edges in 1/cm).
    """
    sites = np.asarray(sites)
    perceived = raters.perceive(measure, seed=seed, noise=rater_noise)
    grades = np.empty(perceived.shape, dtype=int)
    edges = {}
    for site in dict.fromkeys(sites.tolist()):
        rows = sites == site
        e = raters.calibrate_edges(perceived[rows], _target_counts(site, grade_counts))
        grades[rows] = raters.grade(perceived[rows], e)
        edges[site] = [float(f"{v:.6g}") for v in e]
    return grades, edges


def generate_dataset(out_dir, *, scans_per_site, image_size, oversample, stack_slices,
                     n_projections, field_of_view_mm, projection_noise, fbp_window,
                     grade_counts, rater_noise, seed, projections="qme", progress=None,
                     workers=1, slices_per_scan=8, simulated_slices=None) -> Path:
    """Writes a simulated cohort in the layout of the module docstring.

    Every scan gets its own seed drawn from `seed`, so the cohort is the same
    whatever the number of workers. Scans are written as they are simulated (one
    scan in memory per worker). The raters grade the artefact measure of each scan's
    reconstruction (`artefact_rms`) on band edges calibrated per site so that the
    consensus follows `grade_counts` (`rate_cohort`); the true grade only sets the
    size of the motion drawn.

    Args:
        out_dir: str or Path. Dataset folder (created).
        scans_per_site: dict site -> number of scans.
        image_size, oversample, stack_slices, n_projections, field_of_view_mm,
            projection_noise, fbp_window: see `simulate_scan`.
        grade_counts: "thesis" or "uniform". Frequencies of the true grades and
            of the calibrated consensus.
        rater_noise: float. See `hrpqct.raters.perceive`.
        seed: int.
        projections: str, default "qme". Views written per scan: "qme" (the 0-degree
            view, its neighbour and the 180-degree view: what the QME needs), "all"
            or "none".
        progress: callable wrapping an iterable (a progress bar), optional.
        workers: int, default 1. Processes simulating scans in parallel.
        slices_per_scan: int, default 8. Slices the artefact measure is taken on.
        simulated_slices: int, optional. Simulate only this many equally spaced slices
            and write stacks of `stack_slices` in which every slice is its nearest
            simulated one (a smoke run at full size: the loader's graded slices are the
            simulated ones). Default: simulate every slice.

    Returns:
        The dataset folder.
    """
    if workers < 1:
        raise ValueError(f"workers must be >= 1. Received: workers={workers}")
    if projections not in PROJECTION_MODES:
        raise ValueError(f"projections must be one of {PROJECTION_MODES}. Received: {projections!r}")
    if grade_counts not in ("thesis", "uniform"):
        raise ValueError(f"grade_counts must be 'thesis' or 'uniform'. Received: {grade_counts!r}")
    root = Path(out_dir)
    (root / "aim").mkdir(parents=True, exist_ok=True)
    if projections != "none":
        (root / "projections").mkdir(exist_ok=True)
    rng = numpy_rng(seed)
    plan = []
    for site, n in dict(scans_per_site).items():
        for k, g in enumerate(_draw_grades(site, int(n), grade_counts, rng)):
            plan.append((f"{site[:3]}{k:04d}", site, int(g)))
    scan_seeds = rng.integers(0, 2 ** 63 - 1, size=len(plan))
    simulated = stack_slices if simulated_slices is None else int(simulated_slices)
    if not 1 <= simulated <= stack_slices:
        raise ValueError(f"simulated_slices must be in 1..stack_slices={stack_slices}. Received: {simulated_slices}")
    kw = dict(image_size=image_size, oversample=oversample, stack_slices=simulated,
              n_projections=n_projections, field_of_view_mm=field_of_view_mm,
              projection_noise=projection_noise, fbp_window=fbp_window, artefact_slices=slices_per_scan)
    jobs = [(root, scan_id, site, grade, int(s), projections, kw, stack_slices)
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
    grades, edges = rate_cohort([r["site"] for r in sim_rows], [r["artefact_rms"] for r in sim_rows],
                                grade_counts=grade_counts, rater_noise=rater_noise, seed=rng)
    lines = [",".join(("scan_id", "site") + RATER_COLUMNS)]
    lines += [",".join([scan_id, site] + [str(int(g)) for g in row]) for (scan_id, site, _), row in zip(plan, grades)]
    write_text(root / GRADES_FILE, "\n".join(lines) + "\n")
    with atomic_path(root / SIMULATION_FILE) as tmp, open(tmp, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(sim_rows[0]))
        w.writeheader()
        w.writerows(sim_rows)
    write_json(root / "dataset.json", {
        "image_size": image_size, "stack_slices": stack_slices, "n_projections": n_projections,
        "field_of_view_mm": field_of_view_mm, "scans": len(plan), "seed": seed, "projections": projections,
        "rater_noise": rater_noise, "grade_counts": grade_counts,
        "rater_edges_per_cm": edges})
    return root


def read_grades(path) -> list[dict]:
    """Reads a grades table: scan_id, site (radius|tibia), up to three rater columns.

    Returns:
        list of dicts with ``scan_id``, ``site``, ``grades`` (list of 3
        floats, NaN where a rater is missing) and ``line`` (its line in the file).

    Raises:
        FileNotFoundError: no such file.
        ValueError: text that is not UTF-8 (a UTF-8 byte-order mark is accepted), a
            missing, unknown (e.g. ``rater4``) or repeated column, an empty, malformed
            or duplicate scan id, an unknown site, a grade that is not an integer
            1-5, or a scan without any grade; the message names the file, the row
            and the column.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"grades table not found: {path}")
    raw = path.read_bytes()
    if raw[:2] in (b"\xff\xfe", b"\xfe\xff"):
        raise ValueError(f"{path}: expected UTF-8 text. Received: a UTF-16 byte-order mark")
    try:
        text = raw.decode("utf-8-sig")  # a UTF-8 byte-order mark (spreadsheet export) is dropped
    except UnicodeDecodeError as err:
        raise ValueError(f"{path}: expected UTF-8 text. Received: byte 0x{raw[err.start]:02x} at "
                         f"offset {err.start}") from err
    reader = csv.DictReader(io.StringIO(text, newline=""))
    fields = [f.strip() for f in (reader.fieldnames or [])]
    reader.fieldnames = fields
    for col in ("scan_id", "site"):
        if col not in fields:
            raise ValueError(f"{path}: missing column {col!r}; expected scan_id, site, rater1..rater3. "
                             f"Received columns: {fields}")
    unknown = [f for f in fields if f not in ("scan_id", "site") + RATER_COLUMNS]
    if unknown:
        raise ValueError(f"{path}: unknown column(s) {unknown}; expected scan_id, site and rater "
                         f"columns among {list(RATER_COLUMNS)}")
    if len(set(fields)) != len(fields):
        raise ValueError(f"{path}: duplicate column names. Received columns: {fields}")
    raters = [c for c in RATER_COLUMNS if c in fields]
    if not raters:
        raise ValueError(f"{path}: no rater column; expected at least one of {RATER_COLUMNS}")
    rows = []
    first_line = {}
    for line, row in enumerate(reader, start=2):
        if None in row:
            raise ValueError(f"{path}, line {line}: more fields than the {len(fields)} columns")
        scan_id = (row["scan_id"] or "").strip()
        if not scan_id:
            raise ValueError(f"{path}, line {line}, column 'scan_id': must not be empty")
        if not _SCAN_ID.fullmatch(scan_id):
            raise ValueError(f"{path}, line {line}, column 'scan_id': expected letters, digits, "
                             f"'.', '_' or '-' (it names the AIM file). Received: {scan_id!r}")
        if scan_id in first_line:
            raise ValueError(f"{path}, line {line}, column 'scan_id': duplicate scan id {scan_id!r} "
                             f"(first on line {first_line[scan_id]})")
        first_line[scan_id] = line
        site = (row["site"] or "").strip().lower()
        if site not in phantom.SITES:
            raise ValueError(f"{path}, line {line} (scan {row['scan_id']!r}): site must be "
                             f"'radius' or 'tibia'. Received: {row['site']!r}")
        grades = []
        for col in RATER_COLUMNS:
            cell = (row.get(col) or "").strip()
            if not cell:
                grades.append(np.nan)
                continue
            try:
                value = float(cell)
            except ValueError:
                value = np.nan
            if not (value in (1, 2, 3, 4, 5)):
                raise ValueError(f"{path}, line {line} (scan {row['scan_id']!r}), column {col!r}: "
                                 f"grades must be integers 1-5. Received: {cell!r}")
            grades.append(value)
        if all(np.isnan(grades)):
            raise ValueError(f"{path}, line {line} (scan {row['scan_id']!r}): no rater grade")
        rows.append({"scan_id": scan_id, "site": site, "grades": grades, "line": line})
    if not rows:
        raise ValueError(f"{path}: no scans listed")
    return rows


def equally_spaced(n_total: int, n: int) -> np.ndarray:
    """Indices of `n` equally spaced slices of a stack of `n_total` (first and last included)."""
    if n_total < n:
        raise ValueError(f"need at least {n} slices. Received: {n_total}")
    return np.round(np.linspace(0, n_total - 1, n)).astype(int)


def _read_graded_slices(path, slices_per_scan, backend) -> tuple:
    """(slices [S, y, x] float32 in 1/cm, element size (y, x) in mm) of an AIM file."""
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
    if data.shape[0] < slices_per_scan:
        raise ValueError(f"{path}: expected at least {slices_per_scan} slices. Received: {data.shape[0]}")
    if min(data.shape[1:]) < MIN_SLICE_PIXELS:
        raise ValueError(f"{path}: field 'dimensions': expected slices of at least {MIN_SLICE_PIXELS} x "
                         f"{MIN_SLICE_PIXELS} pixels. Received: y x x = {data.shape[1]} x {data.shape[2]}")
    picked = data[equally_spaced(data.shape[0], slices_per_scan)].astype(np.float32)
    if not np.all(np.isfinite(picked)):
        bad = int(np.count_nonzero(~np.isfinite(picked)))
        raise ValueError(f"{path}: field 'data' must hold finite grey values. Received: {bad} NaN or "
                         f"Inf voxels in the graded slices")
    scale = img.mu_scaling  # raises, naming the file, for a zero, negative or non-numeric scaling
    if scale is not None:
        picked /= np.float32(scale)
    spacing = np.asarray(img.spacing, dtype=float).ravel()
    if spacing.size < 2 or not (np.all(np.isfinite(spacing[:2])) and np.all(spacing[:2] > 0)):
        raise ValueError(f"{path}: field 'element size' must be finite and positive (mm). "
                         f"Received: {tuple(spacing.tolist())}")
    return picked, (float(spacing[1]), float(spacing[0]))


def load_scan_slices(path, *, slices_per_scan=8, backend="auto") -> np.ndarray:
    """Reads an AIM stack and returns `slices_per_scan` equally spaced slices (1/cm), as stored.

    Args:
        path: str or Path. AIM file.
        slices_per_scan: int, default 8 (thesis).
        backend: str. See `hrpqct.aim.read_aim`.

    Returns:
        float32 array [slices_per_scan, y, x] of attenuation (raw values divided
        by the log's ``Mu_Scaling`` when present), any in-plane size of at least
        `hrpqct.scan_input.MIN_SLICE_PIXELS`.

    Raises:
        ValueError: not a 3D grey-value volume (int16/int32/float32), slices smaller than
            the declared minimum, fewer slices than `slices_per_scan`, non-finite voxels,
            a bad element size; names the file.
    """
    return _read_graded_slices(path, slices_per_scan, backend)[0]


def load_scan_input(path, *, slices_per_scan=8, field_of_view_mm=80.0, image_size=None, prefilter_mm=0.0,
                    backend="auto") -> tuple:
    """The graders' input of one AIM file: `hrpqct.scan_input.model_input` of its graded slices.

    Any in-plane size and element size: the field of `field_of_view_mm` is centred on the
    limb, cropped or padded with air, prefiltered (`prefilter_mm`) and resampled to
    `image_size` (default: the file's own pixel size).

    Returns:
        (float32 array [slices_per_scan, n, n], bool array [n, n]: pixel inside the AIM).

    Raises:
        ValueError: as `load_scan_slices`, or no limb found (names the file).
    """
    slices, pixel_mm = _read_graded_slices(path, slices_per_scan, backend)
    try:
        return model_input(slices, pixel_mm, field_of_view_mm=field_of_view_mm, image_size=image_size,
                           prefilter_mm=prefilter_mm)
    except LimbNotFound as err:
        raise ValueError(f"{path}: field 'data': {err}") from None


def _aim_paths(root, rows) -> list:
    """The AIM file of every row of the grades table; refuses a missing folder, an empty
    one and a missing file, naming the folder or file and the table's line."""
    folder = root / "aim"
    if not folder.is_dir():
        raise FileNotFoundError(f"AIM folder not found: {folder} (expected aim/<scan_id>.AIM for every scan "
                                f"of {GRADES_FILE})")
    if not any(p.suffix.lower() == ".aim" for p in folder.iterdir()):
        raise ValueError(f"{folder}: no AIM files; expected <scan_id>.AIM for every scan of {GRADES_FILE} "
                         f"(first: {rows[0]['scan_id']}.AIM)")
    paths = []
    for r in rows:
        path = folder / f"{r['scan_id']}.AIM"
        if not path.is_file():
            raise FileNotFoundError(f"AIM file not found: {path} (scan {r['scan_id']!r} on line {r['line']} of "
                                    f"{root / GRADES_FILE})")
        paths.append(path)
    return paths


def load_dataset(root, *, slices_per_scan=8, image_size=None, field_of_view_mm=80.0, prefilter_mm=0.0,
                 backend="auto") -> dict:
    """Loads a dataset folder: the graders' input, the grades and (when present) the QMEs.

    Every AIM goes through `load_scan_input` (any in-plane size, the same way for
    simulated and real scans).

    Args:
        root: str or Path. Folder with grades.csv and aim/.
        slices_per_scan: int, default 8.
        image_size: int, optional. Slice size of the input (default: each file's own
            pixel size over the field; files of different pixel sizes then need it).
        field_of_view_mm: float, default 80. Square field centred on the limb.
        prefilter_mm: float, default 0. Gaussian prefilter sigma in mm.
        backend: str. AIM reader backend.

    Returns:
        dict: ``images`` [N, S, n, n] float32, ``measured`` [N, n, n] bool (pixel inside
        the AIM), ``scan_ids``, ``sites`` (arrays
        of str), ``rater_grades`` [N, 3] float (NaN = missing), ``consensus`` [N]
        int (rounded mean), and when the folder holds projections ``qme_ssd``,
        ``qme_ncc`` [N]; from simulation.csv ``true_grade`` and ``motion_size``.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"data folder not found: {root} (expected {GRADES_FILE} and aim/ in it)")
    rows = read_grades(root / GRADES_FILE)
    images = measured = None
    for i, path in enumerate(_aim_paths(root, rows)):
        x, m = load_scan_input(path, slices_per_scan=slices_per_scan, field_of_view_mm=field_of_view_mm,
                               image_size=image_size, prefilter_mm=prefilter_mm, backend=backend)
        if images is None:  # one array for the cohort, filled scan by scan
            images = np.empty((len(rows),) + x.shape, dtype=np.float32)
            measured = np.empty((len(rows),) + m.shape, dtype=bool)
        elif x.shape != images.shape[1:]:
            raise ValueError(f"{path}: field 'element size': the field of {field_of_view_mm:g} mm is "
                             f"{x.shape[-1]} pixels at this file's element size, {images.shape[-1]} at the "
                             f"first file's; expected one image size (give --image-size)")
        images[i], measured[i] = x, m
    out = {"images": images, "measured": measured, "scan_ids": np.array([r["scan_id"] for r in rows]),
           "sites": np.array([r["site"] for r in rows]),
           "rater_grades": np.array([r["grades"] for r in rows], dtype=float)}
    out["consensus"] = motion.consensus(out["rater_grades"])
    if len(np.unique(out["consensus"])) < 2:
        raise ValueError(f"{root / GRADES_FILE}: columns {list(RATER_COLUMNS)}: every scan has the consensus grade "
                         f"{int(out['consensus'][0])}; expected at least two different grades (a one-class set "
                         "cannot be graded or scored)")
    proj = root / "projections"
    if proj.is_dir():
        qmes = []
        for r in rows:
            f = proj / f"{r['scan_id']}.npz"
            if not f.is_file():
                raise FileNotFoundError(f"projections of scan {r['scan_id']!r} not found: {f}")
            try:
                check_npz(f)  # array headers against the stored bytes, before allocating
            except ValueError as err:
                raise ValueError(f"{f}: field 'views' could not be read: "
                                 f"{str(err).removeprefix(f'{f}: ')}") from None
            try:
                with np.load(f, allow_pickle=False) as z:
                    views = z["views"]
            except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as err:
                raise ValueError(f"{f}: field 'views' could not be read ({type(err).__name__}); expected "
                                 f"an .npz with views [>= 3, slices, bins]") from err
            if views.ndim != 3 or views.shape[0] < 3 or not np.all(np.isfinite(views)):
                raise ValueError(f"{f}: field 'views' must be finite [>= 3 views, slices, bins]. "
                                 f"Received: shape={views.shape}")
            qmes.append(qme.qme_from_sinogram(views))
        for key in ("qme_ssd", "qme_ncc", "qme_ncc_printed"):
            out[key] = np.array([q[key] for q in qmes])
    sim = root / SIMULATION_FILE
    if sim.is_file():
        out.update(_read_simulation(sim, rows))
    return out


def _read_simulation(sim, rows) -> dict:
    """true_grade, motion_size (and artefact_rms) of the graded scans, from simulation.csv."""
    columns, table = read_table(sim, expected="columns scan_id, true_grade, motion_size")
    for column in ("scan_id", "true_grade", "motion_size"):
        if column not in columns:
            raise ValueError(f"{sim}: missing column {column!r}; expected scan_id, true_grade, motion_size. "
                             f"Received columns: {columns}")
    truth = {r["scan_id"]: (line, r) for line, r in table}
    missing = [r["scan_id"] for r in rows if r["scan_id"] not in truth]
    if missing:
        raise ValueError(f"{sim}: column 'scan_id' lacks scans of {GRADES_FILE}: {missing[:5]}")
    out = {}
    wanted = [("true_grade", int), ("motion_size", float)]
    if all("artefact_rms" in truth[r["scan_id"]][1] for r in rows):
        wanted.append(("artefact_rms", float))
    for column, kind in wanted:
        values = []
        for r in rows:
            line, row = truth[r["scan_id"]]
            try:
                value = kind(row[column] or "")
            except ValueError:
                raise ValueError(f"{sim}, line {line} (scan {r['scan_id']!r}), column {column!r}: expected "
                                 f"{'an integer' if kind is int else 'a number'}. Received: {row[column]!r}") from None
            values.append(value)
        out[column] = np.array(values)
    return out

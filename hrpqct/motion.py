"""Subject motion during the acquisition, motion grades and simulated raters.

A trajectory gives, for every view of the acquisition (time ``t = k / n`` from
0 to 1), the rigid displacement of the limb: a translation (x, y) and an
in-plane rotation about the main bone's centre. It is the sum of random events
of the three kinds patients produce:

* **twitch**: a sudden jump at a random time, over a few views, that either
  stays (the limb settles in a new position: doubled edges) or returns
  (a spasm: streaks);
* **drift**: a slow, smooth displacement over a random part of the scan
  (relaxing muscles, sliding in the cast: blurring);
* **tremor**: an oscillation of random frequency during a random interval.

Each scan draws one to three events with random sizes, directions and times;
the trajectory is then scaled so that its *motion size* equals a target drawn
for the scan's grade (Whittier et al.'s 1-5 scale: 1 no visible motion, 5
severe streaks). The motion size is the root mean square, over the views, of
the displacement of the bone outline from its mean position, in millimetres
(`motion_size`). It is the quantity the artefact grows with: to first order a
displaced view differs from the still one by the projection's gradient times
the displacement, filtered back-projection is linear, so the energy of the
artefact is the sum over the views of the squared displacements. The largest
displacement (the size of the worst twitch) is not: a spasm over two views
moves the limb far and leaves almost no trace. Sizes and grade bands are in
millimetres, so one grade means the same motion at every reconstruction grid;
in pixels the motion grows with the grid's resolution.

Raters: each of three simulated operators sees the motion size through
multiplicative log-normal noise around a personal bias and grades it on the
same scale, so they disagree near grade boundaries, as real operators do
(the thesis: they disagree in up to 30 % of cases; full consensus in 51 %).
The consensus is the rounded mean of the raters' grades ("rounded" in the
thesis' grade table).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from shared.training.seeding import numpy_rng

GRADES = (1, 2, 3, 4, 5)
# Motion-size band edges (RMS outline displacement, mm) between grades 1|2, 2|3,
# 3|4 and 4|5.
DEFAULT_GRADE_EDGES = (0.2, 0.5, 1.0, 2.0)
# Largest motion size drawn for grade 5 (mm).
DEFAULT_MAX_MOTION = 4.0
# Smallest motion size drawn for a moving grade-1 scan (mm).
DEFAULT_MIN_MOTION = 0.02
# The thesis' table of rounded consensus grades (scans per grade 1..5).
THESIS_GRADE_COUNTS = {"tibia": (334, 97, 42, 24, 2), "radius": (139, 169, 233, 62, 8)}


@dataclasses.dataclass
class Trajectory:
    """Rigid motion per view.

    Attributes:
        shift: float array [V, 2]. Translation (x, y) in mm.
        rot: float array [V]. In-plane rotation (radians) about the pivot.
        events: list of str. The event kinds that made it.
    """

    shift: np.ndarray
    rot: np.ndarray
    events: list


def round_half_up(x):
    """Rounds .5 upwards (NumPy's `round` rounds half to even)."""
    return np.floor(np.asarray(x, dtype=float) + 0.5).astype(int)


def grade_from_motion(size, edges=DEFAULT_GRADE_EDGES):
    """Grade 1-5 of a motion size (mm): 1 + the number of band edges it reaches."""
    return 1 + np.searchsorted(np.asarray(edges, dtype=float), np.asarray(size, dtype=float), side="right")


def outline_displacement(traj: Trajectory, lever_arm: float) -> np.ndarray:
    """Per view, the largest displacement of a bone-outline point from its mean position (mm).

    Args:
        traj: Trajectory.
        lever_arm: float. Distance (mm) from the pivot to the bone outline:
            a rotation by ``r`` radians moves the outline by ``r * lever_arm``.

    Returns:
        float array [V]: ``|shift - mean shift| + |rot - mean rot| * lever_arm``.
    """
    d = traj.shift - traj.shift.mean(axis=0)
    r = traj.rot - traj.rot.mean()
    return np.hypot(d[:, 0], d[:, 1]) + np.abs(r) * lever_arm


def motion_size(traj: Trajectory, lever_arm: float) -> float:
    """Root mean square over the views of `outline_displacement` (mm): what the grade is drawn from.

    Example:
        The limb jumps by 2 mm halfway through and stays: every view is 1 mm
        from the mean position, so the motion size is 1 mm. A 2 mm jump for a
        tenth of the views and back: displacements 1.8 mm (a tenth of the views)
        and 0.2 mm, motion size sqrt(0.1 * 1.8^2 + 0.9 * 0.2^2) = 0.6 mm.
    """
    return float(np.sqrt(np.mean(outline_displacement(traj, lever_arm) ** 2)))


def _smoothstep(x):
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def sample_trajectory(n_views: int, *, size: float, lever_arm: float, seed,
                      event_kinds=("twitch", "drift", "tremor")) -> Trajectory:
    """Draws a random trajectory scaled to a given motion size.

    Args:
        n_views: int. Views of the acquisition (including the 180-degree view).
        size: float. Target motion size in mm (0 = no motion), see `motion_size`.
        lever_arm: float. Pivot-to-outline distance (mm), see `outline_displacement`.
        seed: int or np.random.Generator.
        event_kinds: kinds to draw from.

    Returns:
        Trajectory whose `motion_size` equals `size` (up to rounding).
    """
    rng = numpy_rng(seed)
    t = np.linspace(0.0, 1.0, n_views)
    shift = np.zeros((n_views, 2))
    rot = np.zeros(n_views)
    if size <= 0:
        return Trajectory(shift, rot, [])
    n_events = int(rng.integers(1, 4))
    kinds = list(rng.choice(list(event_kinds), size=n_events))
    for kind in kinds:
        direction = rng.normal(size=2)
        direction /= np.linalg.norm(direction) + 1e-12
        amp = rng.uniform(0.3, 1.0)
        # A rotation moving the outline by about 15 % of the translation.
        rot_amp = rng.normal(0.0, 0.15) / max(lever_arm, 1.0)
        if kind == "twitch":
            t0 = rng.uniform(0.05, 0.95)
            width = rng.uniform(0.5, 3.0) / n_views + rng.uniform(0.0, 0.03)
            profile = _smoothstep((t - t0) / width)
            if rng.random() < 0.5:  # the limb comes back after a spasm of 3-20 % of the scan
                back = t0 + width + rng.uniform(0.03, 0.2)
                profile = profile - _smoothstep((t - back) / width)
        elif kind == "drift":
            t0 = rng.uniform(0.0, 0.6)
            t1 = rng.uniform(t0 + 0.2, 1.0 + 1e-9)
            profile = _smoothstep((t - t0) / max(t1 - t0, 1e-3))
        else:  # tremor
            t0 = rng.uniform(0.0, 0.7)
            t1 = min(1.0, t0 + rng.uniform(0.1, 0.5))
            cycles = rng.uniform(3.0, 25.0)
            env = _smoothstep((t - t0) / 0.02) * (1.0 - _smoothstep((t - t1) / 0.02))
            profile = env * np.sin(2 * np.pi * cycles * t + rng.uniform(0, 2 * np.pi))
        shift += amp * profile[:, None] * direction[None, :]
        rot += amp * profile * rot_amp
    traj = Trajectory(shift, rot, [str(k) for k in kinds])
    current = motion_size(traj, lever_arm)
    if current <= 1e-9:
        return sample_trajectory(n_views, size=size, lever_arm=lever_arm, seed=rng,
                                 event_kinds=event_kinds)
    factor = size / current
    return Trajectory(shift * factor, rot * factor, traj.events)


def sample_grades(site: str, n: int, *, seed, counts=None) -> np.ndarray:
    """Draws true grades 1-5 with the thesis' per-site grade frequencies.

    Args:
        site: str. ``"radius"`` or ``"tibia"``.
        n: int. Number of scans.
        seed: int or np.random.Generator.
        counts: 5 numbers, optional. Relative frequencies (default: the thesis' table).

    Returns:
        int array [n]; the grade counts match the frequencies as closely as
        integers allow (largest remainders), in random order.
    """
    if counts is None:
        if site not in THESIS_GRADE_COUNTS:
            raise ValueError(f"site must be one of {list(THESIS_GRADE_COUNTS)}. Received: {site!r}")
        counts = THESIS_GRADE_COUNTS[site]
    p = np.asarray(counts, dtype=float)
    p = p / p.sum()
    exact = p * n
    base = np.floor(exact).astype(int)
    rest = n - base.sum()
    base[np.argsort(-(exact - base), kind="stable")[:rest]] += 1
    grades = np.repeat(np.arange(1, 6), base)
    return numpy_rng(seed).permutation(grades)


def sample_motion_size(grade: int, *, seed, edges=DEFAULT_GRADE_EDGES,
                       max_size=DEFAULT_MAX_MOTION, min_size=DEFAULT_MIN_MOTION, still_fraction=0.3) -> float:
    """Motion size (mm, see `motion_size`) for a grade: log-uniform inside the grade's band.

    Grade 1 scans are perfectly still with probability `still_fraction`.
    """
    rng = numpy_rng(seed)
    lows = (float(min_size),) + tuple(edges)
    highs = tuple(edges) + (max_size,)
    if grade not in GRADES:
        raise ValueError(f"grade must be in 1..5. Received: {grade}")
    if grade == 1 and rng.random() < still_fraction:
        return 0.0
    lo, hi = lows[grade - 1], highs[grade - 1]
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


def simulate_raters(sizes, *, seed, noise=0.35, biases=(-0.1, 0.0, 0.12),
                    edges=DEFAULT_GRADE_EDGES) -> np.ndarray:
    """Grades of simulated operators who perceive the motion size with noise.

    Rater ``r`` grades ``size * exp(bias_r + noise * N(0, 1))``; a still scan
    (size 0) is perceived as a tiny motion (`DEFAULT_MIN_MOTION`), so it is
    graded 1 unless the noise is very large.

    Args:
        sizes: float array [n]. True motion sizes (mm).
        seed: int or np.random.Generator.
        noise: float, default 0.35. Log-normal perception noise.
        biases: floats, one per rater. Log-scale personal bias (strict or lenient).
        edges: grade band edges (mm).

    Returns:
        int array [n, n_raters] of grades 1-5.
    """
    rng = numpy_rng(seed)
    sizes = np.maximum(np.asarray(sizes, dtype=float), DEFAULT_MIN_MOTION)
    out = np.empty((len(sizes), len(biases)), dtype=int)
    for r, bias in enumerate(biases):
        seen = sizes * np.exp(bias + noise * rng.standard_normal(len(sizes)))
        out[:, r] = grade_from_motion(seen, edges)
    return out


def consensus(grades) -> np.ndarray:
    """Rounded mean (half up) of each row's available grades (NaN = missing rater)."""
    g = np.asarray(grades, dtype=float)
    if g.ndim == 1:
        g = g[:, None]
    return round_half_up(np.nanmean(g, axis=1))

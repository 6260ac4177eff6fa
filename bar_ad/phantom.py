"""A synthetic AD / CN cohort: the MNI template under subject-specific anatomy and atrophy.

Every subject is the T1 template (see `bar_ad.atlas`) under a smooth random deformation
and intensity variation (gain, bias field, noise); each scan (visit) adds a little
longitudinal change. Normal ageing (all subjects): cortical grey-matter loss and
ventricle enlargement growing with age. AD subjects additionally get atrophy of varying
severity spread over AD-relevant AAL regions (hippocampus, amygdala, parahippocampal,
temporal and parietal cortex, precuneus, posterior cingulate; `REGION_WEIGHTS`) and
stronger ventricle enlargement. Tissue loss shows as darker, CSF-like intensity where
atrophy acts (partial-volume effect at the working resolution).

The arrays are made here; `bar_ad.data.write_adni_cohort` writes them to disk in the
ADNI layout.
"""

import dataclasses

import numpy as np
from scipy import ndimage

from bar_ad.atlas import Atlas

# Relative AD atrophy per merged AAL region (medial temporal lobe first).
REGION_WEIGHTS = {
    "Hippocampus": 1.0, "Amygdala": 1.0, "ParaHippocampal": 0.9,
    "Temporal_Pole_Sup": 0.6, "Temporal_Pole_Mid": 0.6, "Temporal_Inf": 0.6,
    "Temporal_Mid": 0.55, "Temporal_Sup": 0.45, "Fusiform": 0.55,
    "Precuneus": 0.5, "Cingulate_Post": 0.5, "Angular": 0.45, "Parietal_Inf": 0.45,
    "SupraMarginal": 0.4, "Parietal_Sup": 0.35,
}


@dataclasses.dataclass
class CohortSpec:
    """Size and effect sizes of the synthetic cohort.

    Attributes:
        n_ad: int, default 246. AD subjects (paper: 246).
        n_cn: int, default 597. CN subjects (paper: 597).
        n_mci: int, default 0. MCI subjects (written, ignored by the AD-vs-CN task).
        scans_per_subject: (int, int), default (3, 5). Inclusive range of scans per
            subject (paper: 3306 scans / 843 subjects = 3.9).
        age_mean, age_std: float, default 76.0, 6.0. Baseline age (paper: about 77).
        severity: (float, float), default (0.25, 1.0). Uniform range of AD severity.
        ad_atrophy: float, default 0.4. Intensity loss of a weight-1 region at severity 1.
        ageing_atrophy: float, default 0.006. Cortical intensity loss per year over 60.
        ventricle_mm: float, default 3.0. Ventricle enlargement (mm) at AD severity 1.
        ventricle_age_mm: float, default 0.08. Ventricle enlargement per year over 60.
        deform_mm: float, default 2.5. Amplitude of the smooth subject deformation.
        deform_sigma_mm: float, default 12.0. Smoothness of that deformation.
        gain_std: float, default 0.06. Scan intensity gain spread.
        bias_std: float, default 0.06. Multiplicative bias field amplitude.
        noise_std: float, default 0.03. Voxel noise (template scale 0..1).
        visit_years: tuple, default (0, 0.5, 1, 2, 3). Visit times of the scans, in order.
        petalia_mm: float, default 5.0. The brain's shared left-right asymmetry
            (Yakovlevian torque): the right frontal pole reaches this far forward, the
            left occipital pole this far back. The template is symmetric; this is what
            lets the loader tell a left-right flipped scan (`bar_ad.alignment`).
        region_std: float, default 0.0. Normal between-subject variation of every atlas
            region's intensity (a per-subject, per-region gain of 1 + region_std * N(0, 1)),
            in AD and CN alike: no single region separates the groups perfectly.
        ad_region_jitter: float, default 0.0. Heterogeneity of AD atrophy: each AD
            subject's region weights are `REGION_WEIGHTS` times a log-normal factor of
            this spread, so atrophy patterns differ from subject to subject.
    """

    n_ad: int = 246
    n_cn: int = 597
    n_mci: int = 0
    scans_per_subject: tuple = (3, 5)
    age_mean: float = 76.0
    age_std: float = 6.0
    severity: tuple = (0.25, 1.0)
    ad_atrophy: float = 0.4
    ageing_atrophy: float = 0.006
    ventricle_mm: float = 3.0
    ventricle_age_mm: float = 0.08
    deform_mm: float = 2.5
    deform_sigma_mm: float = 12.0
    gain_std: float = 0.06
    bias_std: float = 0.06
    noise_std: float = 0.03
    visit_years: tuple = (0.0, 0.5, 1.0, 2.0, 3.0)
    petalia_mm: float = 5.0
    region_std: float = 0.0
    ad_region_jitter: float = 0.0


@dataclasses.dataclass
class Scan:
    """One synthetic scan: its volume and the metadata the collection CSV records."""

    subject: str
    group: str
    sex: str
    age: float
    visit: str
    years: float
    image_id: int
    severity: float
    volume: np.ndarray


def _smooth_field(rng, shape, sigma_vox, amplitude):
    field = ndimage.gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma_vox)
    std = float(field.std())
    return field * (amplitude / std) if std > 0 else field


class CohortGenerator:
    """Draws subjects and their scans on an atlas grid.

    Args:
        atlas: `Atlas` on the generation grid.
        spec: `CohortSpec`.
    """

    VISITS = ("bl", "m06", "m12", "m24", "m36", "m48", "m60")

    def __init__(self, atlas: Atlas, spec: CohortSpec):
        self.atlas = atlas
        self.spec = spec
        self.voxel_mm = np.abs(np.diag(atlas.affine)[:3])
        weights = np.zeros(atlas.num_regions + 1, np.float32)
        for name, w in REGION_WEIGHTS.items():
            if name in atlas.names:
                weights[atlas.region_label(name)] = w
        self.region_weights = weights
        self.ad_map = ndimage.gaussian_filter(weights[atlas.labels], 0.7).astype(np.float32)
        template = atlas.template
        brain = atlas.brain_mask
        # Grey matter (cortex) = intermediate T1 intensities: where ageing thins tissue.
        self.gm = (brain & (template > 0.35) & (template < 0.8)).astype(np.float32)
        # Ventricles: dark brain voxels near the centre of the brain.
        centre = np.array(ndimage.center_of_mass(brain))
        grid = np.indices(brain.shape).astype(np.float32)
        dist_mm = np.sqrt(sum(((grid[a] - centre[a]) * self.voxel_mm[a]) ** 2 for a in range(3)))
        vent = brain & (template < 0.4) & (dist_mm < 35)
        self.ventricle_centre = (np.array(ndimage.center_of_mass(vent))
                                 if vent.any() else centre)
        self.grid = grid
        self.petalia = self._petalia_field(spec.petalia_mm)

    def _petalia_field(self, magnitude_mm):
        """Displacement (voxels, axis 1) of the frontal-occipital petalia."""
        world = [self.grid[a] * self.atlas.affine[a, a] + self.atlas.affine[a, 3]
                 for a in range(3)]
        x, y = world[0], world[1]

        def sigmoid(t):
            return 1.0 / (1.0 + np.exp(-t))

        forward = sigmoid(x / 8.0) * sigmoid((y - 10.0) / 12.0)
        backward = sigmoid(-x / 8.0) * sigmoid((-50.0 - y) / 12.0)
        return (magnitude_mm * (forward - backward) / self.voxel_mm[1]).astype(np.float32)

    def _radial_field(self, magnitude_mm):
        """Displacement (voxels) pushing tissue away from the ventricles' centre."""
        offsets = [(self.grid[a] - self.ventricle_centre[a]) * self.voxel_mm[a] for a in range(3)]
        r2 = sum(o ** 2 for o in offsets)
        falloff = np.exp(-r2 / (2 * 18.0 ** 2))
        r = np.sqrt(r2) + 1e-3
        return [magnitude_mm * falloff * o / r / self.voxel_mm[a] for a, o in enumerate(offsets)]

    def subject_maps(self, rng):
        """(AD atrophy map, regional gain map) of one subject (see `region_std`, `ad_region_jitter`)."""
        spec = self.spec
        ad_map, gain_map = self.ad_map, None
        n = self.atlas.num_regions + 1
        if spec.ad_region_jitter > 0:
            factors = np.exp(spec.ad_region_jitter * rng.standard_normal(n)).astype(np.float32)
            ad_map = ndimage.gaussian_filter((self.region_weights * factors)[self.atlas.labels], 0.7)
        if spec.region_std > 0:
            gains = (1.0 + spec.region_std * rng.standard_normal(n)).astype(np.float32)
            gain_map = ndimage.gaussian_filter(gains[self.atlas.labels], 0.7)
        return ad_map.astype(np.float32), gain_map

    def scan_volume(self, rng, subject_field, gain, bias, age, severity, years, maps=None):
        """One scan (float32, template scale) of a subject at `years` after baseline."""
        spec = self.spec
        ad_map, gain_map = (self.ad_map, None) if maps is None else maps
        over60 = max(age + years - 60.0, 0.0)
        progress = severity * (1.0 + 0.25 * years) if severity > 0 else 0.0
        loss = spec.ageing_atrophy * over60 * self.gm + spec.ad_atrophy * progress * ad_map
        image = self.atlas.template * np.clip(1.0 - loss, 0.0, 1.0)
        if gain_map is not None:
            image = image * gain_map
        radial = self._radial_field(spec.ventricle_mm * progress + spec.ventricle_age_mm * over60)
        coords = [self.grid[a] - radial[a] - subject_field[a] for a in range(3)]
        image = ndimage.map_coordinates(image, coords, order=1, mode="constant", cval=0.0)
        brain = ndimage.map_coordinates(self.atlas.brain_mask.astype(np.float32), coords,
                                        order=1, mode="constant") > 0.5
        image = image * gain * (1.0 + bias)
        image = image + spec.noise_std * rng.standard_normal(image.shape).astype(np.float32)
        return np.where(brain, np.clip(image, 0.0, None), 0.0).astype(np.float32)

    def subjects(self, seed):
        """Yields `Scan`s subject by subject (AD, CN, then MCI), reproducibly from `seed`."""
        if seed is None:
            raise ValueError("CohortGenerator.subjects needs an explicit seed. Received: None")
        spec = self.spec
        rng = np.random.default_rng(seed)
        groups = ["AD"] * spec.n_ad + ["CN"] * spec.n_cn + ["MCI"] * spec.n_mci
        order = rng.permutation(len(groups))
        image_id = 100000
        sigma_vox = spec.deform_sigma_mm / self.voxel_mm
        for number, k in enumerate(order):
            group = groups[k]
            sub_rng = np.random.default_rng([seed, int(k)])
            site = 2 + number % 140
            subject = f"{site:03d}_S_{1000 + number:04d}"
            sex = "F" if sub_rng.random() < 0.5 else "M"
            age = float(np.clip(sub_rng.normal(spec.age_mean, spec.age_std), 55, 95))
            if group == "AD":
                severity = float(sub_rng.uniform(*spec.severity))
            elif group == "MCI":
                severity = float(sub_rng.uniform(0.0, spec.severity[0]))
            else:
                severity = 0.0
            field = [_smooth_field(sub_rng, self.atlas.shape, sigma_vox, spec.deform_mm / v)
                     for v in self.voxel_mm]
            field[1] = field[1] + self.petalia
            bias = _smooth_field(sub_rng, self.atlas.shape, 3 * sigma_vox, spec.bias_std)
            # Drawn from their own stream so that the default cohort is unchanged.
            maps = self.subject_maps(np.random.default_rng([seed, int(k), 1]))
            lo, hi = spec.scans_per_subject
            n_scans = int(sub_rng.integers(lo, hi + 1))
            for visit in range(n_scans):
                years = float(spec.visit_years[min(visit, len(spec.visit_years) - 1)])
                gain = float(1.0 + spec.gain_std * sub_rng.standard_normal())
                volume = self.scan_volume(sub_rng, field, gain, bias, age, severity, years,
                                          maps=maps)
                image_id += int(sub_rng.integers(1, 500))
                yield Scan(subject=subject, group=group, sex=sex, age=round(age + years, 1),
                           visit=self.VISITS[min(visit, len(self.VISITS) - 1)], years=years,
                           image_id=image_id, severity=severity, volume=volume)

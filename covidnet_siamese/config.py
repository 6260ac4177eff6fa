"""Presets for the "Siamesifying the COVID-Net" reproduction.

`paper` holds the paper's settings (Sections 3.1-3.3, Tables 1-2) and the authors'
released ones where the paper is silent (nf = 128, 1024 fully connected units);
`quick` fits in about two minutes on two CPU cores; `tiny` runs in seconds for the
tests and the notebook in CI.
"""

import dataclasses
from typing import Dict, Optional, Tuple

CLASS_NAMES = ("normal", "pneumonia", "COVID-19")
"""Class index order, as the COVID-Net repository maps them (normal 0, pneumonia 1, COVID-19 2)."""

SINGLE_SELECTION = ("val_accuracy", "val_balanced_accuracy")
"""Criteria the single net's kept epoch may be chosen by (`CovidNetSiameseConfig.select_single`)."""
SIAMESE_SELECTION = ("val_three_way_accuracy", "val_template_accuracy", "val_balanced_accuracy")
"""Criteria the siamese net's kept epoch may be chosen by (`CovidNetSiameseConfig.select_siamese`)."""

# Table 1 of the paper: images per class (normal, pneumonia, COVID-19).
PAPER_COUNTS = {
    "train": (6373, 4361, 179),
    "val": (1593, 1090, 44),
    "test": (885, 594, 31),
}


def paper_shares(covid_per_split: Dict[str, int]) -> Dict[str, Tuple[int, int, int]]:
    """Class counts per split with the paper's Table 1 shares, scaled to a COVID-19 count.

    Args:
        covid_per_split: dict split -> COVID-19 images wanted in that split.

    Returns:
        dict split -> (normal, pneumonia, COVID-19), each split scaled by its own
        factor `covid / paper_covid` and rounded, so every split keeps the paper's shares
        (e.g. test 24 COVID-19 -> (685, 460, 24)).
    """
    out = {}
    for split, covid in covid_per_split.items():
        normal, pneumonia, paper_covid = PAPER_COUNTS[split]
        factor = int(covid) / paper_covid
        out[split] = (int(round(normal * factor)), int(round(pneumonia * factor)), int(covid))
    return out


@dataclasses.dataclass(frozen=True)
class Difficulty:
    """How hard the synthetic data is, declared before any arm is compared.

    Attributes:
        pneumonia_bilateral: probability that a pneumonia image carries a second
            (smaller) consolidation in the other lung.
        covid_unilateral: probability that a COVID-19 image's ground glass is confined
            to one lung (atypical presentation).
        shared_texture: 0..1. Share of the pneumonia opacity drawn with COVID-19's
            patchy ground-glass texture instead of a dense consolidation (the two
            classes then share an opacity vocabulary).
        covid_density: 0..1. Share of COVID-19 images whose opacity is a dense
            peripheral consolidation rather than haze.
        severity_range: (low, high) opacity strength of diseased images; a wide range
            makes classes internally heterogeneous (faint cases are hard).
        artefact_strength: 0..1. How much the border artefacts depend on the class
            (artefact-class co-occurrence; 0 = the same rates for every class).
    """

    pneumonia_bilateral: float = 0.35
    covid_unilateral: float = 0.3
    shared_texture: float = 0.5
    covid_density: float = 0.3
    severity_range: Tuple[float, float] = (0.3, 1.0)
    artefact_strength: float = 0.75

    def __post_init__(self):
        for name in ("pneumonia_bilateral", "covid_unilateral", "shared_texture", "covid_density",
                     "artefact_strength"):
            value = getattr(self, name)
            if not 0.0 <= float(value) <= 1.0:
                raise ValueError(f"Difficulty.{name} must be in [0, 1]. Received: {name}={value}")
        low, high = self.severity_range
        if not 0.0 <= low <= high <= 1.5:
            raise ValueError(f"Difficulty.severity_range must satisfy 0 <= low <= high <= 1.5. "
                             f"Received: severity_range={self.severity_range}")


EASY = Difficulty(pneumonia_bilateral=0.0, covid_unilateral=0.0, shared_texture=0.0, covid_density=0.0,
                  severity_range=(0.5, 1.0))
"""The generator before the difficulty knobs existed (classes barely overlap)."""


@dataclasses.dataclass
class CovidNetSiameseConfig:
    """Every setting of one reproduction run.

    Attributes:
        name: preset name.
        counts: images per split ("train", "val", "test") and class, in the order of
            `CLASS_NAMES`. The generator writes train + val into the COVIDx training
            split; the loader draws `val_fraction` of each class back out (Section 3.1).
        val_fraction: share of each class held out of the training split for validation.
        raw_size: side of the synthetic PNGs in pixels (the loader resizes them).
        image_size: side after preprocessing (224 in the paper).
        crop_fraction: border share cut from each side for the cropping experiment.
        difficulty: `Difficulty`, the generator's declared knobs (class overlap,
            heterogeneity, artefact-class co-occurrence).
        batch_norm: batch normalisation in the trunk. Off in `paper`: the paper names
            none (Figure 4: ReLU on every layer, 2 x 2 max-pooling); on in the reduced
            presets, whose trunks did not train without it (see README).
        nf: width of the first PEPX stage (channels); each later stage doubles it.
        depths: PEPX modules per stage (COVID-Net: 3, 4, 6, 3).
        fc_units: units of the first fully connected layer.
        embedding_dim: length of the siamese feature vector.
        bn_momentum: momentum of the batch-norm moving statistics (see the README).
        search_learning_rates / search_batch_sizes: the grid of Section 3.3.
        search_epochs_single / search_epochs_siamese: epochs per grid point.
        search_pairs_per_epoch: siamese training pairs per epoch in the search (5,000).
        final_epochs_single / final_epochs_siamese: epochs of the final runs (100 / 50).
        final_pairs_per_epoch: siamese training pairs per epoch in the final run (12,000).
        three_way_trials: three-way validation trials (129).
        seeds: seeds of the final runs, for the statistics over seeds.
        gradcam_per_class: test images per class shown with Grad-CAM maps.
        gradcam_images: Grad-CAM maps (and the attention endpoints) on this many test
            images, a fixed random draw from the data seed shared by every arm and
            seed and declared in the protocol; None (default): every test image.
        run_search: run the grid search (False: use `default_learning_rate/batch`).
        default_learning_rate: used when no search runs.
        default_batch_size: dict net -> batch size used when no search runs (the
            paper's Table 2 picks: siamese 32, single 16).
        gates: declared bands of the pixel-level logistic-regression gates (see
            `covidnet_siamese.gates`): minimum and maximum recall per class and
            the minimum pneumonia <-> COVID-19 confusion (mean of the two directions),
            of the out-of-fold predictions over the training split.
        gate_folds: stratified folds of that cross-validation (shuffled with the data seed).
        select_single: the single net's epoch kept: "val_accuracy" (the paper's) or
            "val_balanced_accuracy" (mean recall over the classes on the whole
            validation split, which does not reward calling every film normal).
        select_siamese: the siamese net's epoch kept: "val_three_way_accuracy" (the
            paper's 129 trials), "val_template_accuracy" or "val_balanced_accuracy" (the
            test-time template rule on the whole validation split).
        learned_margin: an arm answers a claim only when its validation accuracy under
            its own decision rule beats the majority-class rate of the validation split
            by this much (arm validity, declared in the protocol).
        collapse_share: an arm that gives one class to more than this share of the
            validation films has collapsed onto it (arm validity).
        max_failed_share: share of the units whose arm may fail a validity check
            before the claims naming that arm are untestable.
        jit_compile: compile the train steps with XLA.
    """

    name: str = "paper"
    counts: Dict[str, Tuple[int, int, int]] = dataclasses.field(
        default_factory=lambda: {k: tuple(v) for k, v in PAPER_COUNTS.items()})
    val_fraction: float = 0.2
    raw_size: int = 256
    image_size: int = 224
    crop_fraction: float = 0.1
    difficulty: Difficulty = dataclasses.field(default_factory=Difficulty)
    batch_norm: bool = False
    nf: int = 128
    depths: Tuple[int, ...] = (3, 4, 6, 3)
    fc_units: int = 1024
    embedding_dim: int = 1024
    bn_momentum: float = 0.99
    search_learning_rates: Tuple[float, ...] = (1e-3, 1e-4, 1e-5)
    search_batch_sizes: Tuple[int, ...] = (8, 16, 32)
    search_epochs_single: int = 100
    search_epochs_siamese: int = 20
    search_pairs_per_epoch: int = 5000
    final_epochs_single: int = 100
    final_epochs_siamese: int = 50
    final_pairs_per_epoch: int = 12000
    three_way_trials: int = 129
    seeds: Tuple[int, ...] = (0, 1, 2)
    gradcam_per_class: int = 4
    gradcam_images: Optional[int] = None
    run_search: bool = True
    default_learning_rate: float = 1e-4
    default_batch_size: Dict[str, int] = dataclasses.field(
        default_factory=lambda: {"siamese": 32, "single": 16})
    gate_recall_band: Tuple[float, float] = (0.3, 0.95)
    gate_min_confusion: float = 0.05
    gate_folds: int = 5
    select_single: str = "val_accuracy"
    select_siamese: str = "val_three_way_accuracy"
    learned_margin: float = 0.10
    collapse_share: float = 0.9
    max_failed_share: float = 0.25
    jit_compile: bool = False

    @property
    def artefact_strength(self) -> float:
        """The difficulty's artefact-class co-occurrence."""
        return self.difficulty.artefact_strength

    def __post_init__(self):
        for split in ("train", "val", "test"):
            if split not in self.counts or len(self.counts[split]) != len(CLASS_NAMES):
                raise ValueError(
                    f"counts needs 3 class counts for each of train/val/test. "
                    f"Received: counts={self.counts!r}")
        if not 0.0 <= self.crop_fraction < 0.5:
            raise ValueError(f"crop_fraction must be in [0, 0.5). Received: crop_fraction={self.crop_fraction}")
        if not 0.0 < self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in (0, 1). Received: val_fraction={self.val_fraction}")
        self.depths = tuple(int(d) for d in self.depths)
        self.seeds = tuple(int(s) for s in self.seeds)
        self.counts = {k: tuple(int(c) for c in v) for k, v in self.counts.items()}
        if isinstance(self.default_batch_size, int):
            self.default_batch_size = {"siamese": self.default_batch_size, "single": self.default_batch_size}
        if self.gradcam_images is not None and int(self.gradcam_images) < 1:
            raise ValueError(f"gradcam_images must be None or at least 1. Received: gradcam_images={self.gradcam_images}")
        if int(self.gate_folds) < 2:
            raise ValueError(f"gate_folds must be at least 2. Received: gate_folds={self.gate_folds}")
        if self.select_single not in SINGLE_SELECTION:
            raise ValueError(f"select_single must be one of {SINGLE_SELECTION}. "
                             f"Received: select_single={self.select_single!r}")
        if self.select_siamese not in SIAMESE_SELECTION:
            raise ValueError(f"select_siamese must be one of {SIAMESE_SELECTION}. "
                             f"Received: select_siamese={self.select_siamese!r}")
        if set(self.default_batch_size) != {"siamese", "single"}:
            raise ValueError(f"default_batch_size needs 'siamese' and 'single' entries. "
                             f"Received: default_batch_size={self.default_batch_size!r}")


def paper() -> CovidNetSiameseConfig:
    """The paper's settings: Table 1 sizes, 224 x 224, nf = 128, full grid, 100 / 50 epochs."""
    return CovidNetSiameseConfig()


def quick() -> CovidNetSiameseConfig:
    """About three minutes on two CPU cores.

    A reduced grid (lr 1e-3 / 1e-4, batch 16; 3 single-net and 2 siamese epochs per
    grid point), 30 single-net epochs and 24 siamese epochs of 1,024 pairs (the paper's
    5.6 : 1 ratio of siamese to single-net steps), a 256 / 64 / 64 head, both nets
    keeping the epoch of best balanced validation accuracy, two seeds. Every split
    keeps the paper's class shares (1.6 % COVID-19 in train and test) at 48 / 12 / 24
    COVID-19 images; images are 64 x 64 and the network two narrow stages.
    """
    return CovidNetSiameseConfig(
        name="quick",
        select_single="val_balanced_accuracy",
        select_siamese="val_balanced_accuracy",
        batch_norm=True,
        counts=paper_shares({"train": 48, "val": 12, "test": 24}),
        raw_size=96,
        image_size=64,
        nf=16,
        depths=(1, 1),
        # 256 / 64 / 64: the narrower 64 / 16 / 16 head lost most of its units to the
        # paper's dropout (51 of 64 dead); the width the powered pilot chose.
        fc_units=256,
        embedding_dim=64,
        search_learning_rates=(1e-3, 1e-4),
        search_batch_sizes=(16,),
        # 3 rather than 6 single-net epochs per grid point keeps the demo near 3 minutes.
        search_epochs_single=3,
        search_epochs_siamese=2,
        search_pairs_per_epoch=256,
        final_epochs_single=30,
        # 24 x 1024 / 16 = 1536 siamese steps against the single net's 30 x 144 / 16 = 270:
        # the paper's 5.6 : 1 (50 x 12000 / 32 against 100 x 537 / 16; pilot.siamese_epochs).
        # With 8 x 512 (256 steps) the siamese net only learned to tell COVID-19 apart.
        final_epochs_siamese=24,
        final_pairs_per_epoch=1024,
        three_way_trials=129,
        seeds=(0, 1),
        gradcam_per_class=3,
        default_learning_rate=1e-3,
        default_batch_size={"siamese": 16, "single": 16},
    )


PRIMARY_SIDES = 1
"""Sides of the tests the `powered` seeds are sized for, and of the directional primary
hypotheses' tests (`study_protocol`): one-sided, so the test run is the test sized."""

POWERED_GAP = 0.06
"""The paper's H1 gap (0.87 - 0.81), the effect the powered seeds are sized for."""

POWERED_SD_DIFF = 0.078
"""SD of the siamese - single accuracy differences over five seeds at the quick
settings (README)."""

POWERED_SEEDS = 12
"""Seeds of the `powered` preset: `powered_seeds()`, i.e.
`shared.stats.units_for_mde(0.06, 0.078, alternative="greater")`."""


def powered_seeds(gap=POWERED_GAP, sd_diff=POWERED_SD_DIFF) -> int:
    """Seeds for 80 % power at `gap`: `shared.stats.units_for_mde` for a paired t-test
    with `PRIMARY_SIDES` sides.

    Args:
        gap: float, default POWERED_GAP. The effect to detect, in accuracy.
        sd_diff: float, default POWERED_SD_DIFF. SD of the paired differences.
    """
    from shared.stats import units_for_mde

    return units_for_mde(gap, sd_diff, alternative="greater" if PRIMARY_SIDES == 1 else "two-sided")


PILOT_SEED = 100
"""Data seed of the pilot that chose the powered preset's head width and budget
(`covidnet_siamese/pilot.py`, validation data only; the study seeds are 0 and 1)."""


def powered() -> CovidNetSiameseConfig:
    """The claims' study: 200 COVID-19 test images (paper shares), twelve paired seeds.

    Small images (32 x 32) and a narrow trunk so that twelve seeds of all three arms
    fit in 45 minutes on two CPU cores; no grid search (lr 1e-3, batch 16, the quick
    search's pick for both nets). Head width (256 / 64 / 64) and budget (the single
    net 100 epochs, the paper's count; the siamese net 105 epochs of 1,024 pairs, the
    paper's 5.6 : 1 ratio of steps) chosen on pilot data seed `PILOT_SEED` by the rule of
    `covidnet_siamese.pilot` (README, "Pilot"), then frozen. Both nets keep the epoch
    of best balanced validation accuracy under their own decision rule.
    """
    return CovidNetSiameseConfig(
        name="powered",
        select_single="val_balanced_accuracy",
        select_siamese="val_balanced_accuracy",
        batch_norm=True,
        counts=paper_shares({"train": 60, "val": 15, "test": 200}),
        raw_size=48,
        image_size=32,
        nf=8,
        depths=(1, 1),
        fc_units=256,
        embedding_dim=32,
        search_learning_rates=(1e-3,),
        search_batch_sizes=(16,),
        final_epochs_single=100,
        final_epochs_siamese=105,
        final_pairs_per_epoch=1024,
        three_way_trials=129,
        seeds=tuple(range(POWERED_SEEDS)),
        gradcam_per_class=3,
        run_search=False,
        default_learning_rate=1e-3,
        default_batch_size={"siamese": 16, "single": 16},
    )


def tiny() -> CovidNetSiameseConfig:
    """Seconds: for tests and the notebook in CI (no grid search: lr 1e-3, batch 8)."""
    return CovidNetSiameseConfig(
        name="tiny",
        select_single="val_balanced_accuracy",
        select_siamese="val_balanced_accuracy",
        batch_norm=True,
        counts={"train": (24, 18, 9), "val": (6, 5, 3), "test": (8, 6, 4)},
        gate_recall_band=(0.0, 1.0),
        gate_min_confusion=0.0,
        # Seconds of training cannot learn the task: the arm checks are kept and recorded
        # but set so that they pass (as the gate bands), leaving the verdicts to the units.
        learned_margin=-1.0,
        collapse_share=1.0,
        raw_size=48,
        image_size=32,
        nf=4,
        depths=(1, 1),
        fc_units=16,
        embedding_dim=16,
        search_learning_rates=(1e-3,),
        search_batch_sizes=(8,),
        search_epochs_single=1,
        search_epochs_siamese=1,
        search_pairs_per_epoch=32,
        final_epochs_single=2,
        final_epochs_siamese=2,
        final_pairs_per_epoch=32,
        three_way_trials=9,
        seeds=(0, 1),
        gradcam_per_class=1,
        run_search=False,
        default_learning_rate=1e-3,
        default_batch_size={"siamese": 8, "single": 8},
    )


PRESETS = {"paper": paper, "quick": quick, "powered": powered, "tiny": tiny}


def get_preset(name: str) -> CovidNetSiameseConfig:
    """The preset called `name` ("paper", "quick", "powered" or "tiny")."""
    if name not in PRESETS:
        raise ValueError(f"Unknown preset. Expected one of {sorted(PRESETS)}. Received: name={name!r}")
    return PRESETS[name]()


def study_protocol(config: CovidNetSiameseConfig, seed: int = 0):
    """The study a run declares before training (see docs/studies.md).

    The pairing unit is a final-run seed: every arm of one seed trains on the same
    split (drawn once from `seed`), the same validation draw and the same test set,
    with its weights and batch order drawn from that seed.
    """
    from shared.study import Gate, Hypothesis, Protocol
    from shared.study.protocol import Headroom

    lr_scoring = (f"32 x 32 pixels, class-balanced; pooled out-of-fold predictions of a "
                  f"{int(config.gate_folds)}-fold stratified cross-validation over the training split, "
                  f"folds shuffled with the data seed (test_set.data_seed); validation and test splits "
                  f"unread")
    return Protocol(
        paper="covidnet_siamese", preset=config.name,
        arms=("siamese", "single", "single_cropped"),
        pairing_unit="final-run seed: same split, validation draw and test set for every arm; "
                     "initial weights and batch order drawn from the seed",
        units=tuple(int(s) + int(seed) for s in config.seeds),
        test_set={"source": "the COVIDx test split (synthetic: generated once from the data seed)",
                  "data_seed": int(seed), "images": int(sum(config.counts["test"])),
                  "gradcam_images": "all" if config.gradcam_images is None else
                  f"{int(config.gradcam_images)}, drawn at random (without replacement) from the data seed; "
                  f"the same images for every arm and seed"},
        hypotheses=(
            Hypothesis(id="H1", statement="The siamese net reaches a higher overall test accuracy "
                                          "than the single net (Table 3: 0.87 vs 0.81)",
                       endpoint="accuracy", arms=("siamese", "single"), direction="greater",
                       sesoi=0.03, paper_value="0.87 vs 0.81", sides=PRIMARY_SIDES),
            Hypothesis(id="H2", statement="The single net detects COVID-19 better than the "
                                          "siamese net (Table 3, per-class accuracy)",
                       endpoint="covid_recall", arms=("single", "siamese"), direction="greater",
                       sesoi=0.05, sides=PRIMARY_SIDES),
            Hypothesis(id="H3", statement="Training on border-cropped images lowers the Grad-CAM "
                                          "attention on the border artefacts (Figures 7-8); measured "
                                          "as attention lift (map share on the artefacts over their "
                                          "area) on the same full-frame test images for both nets",
                       endpoint="artefact_lift", arms=("single_cropped", "single"),
                       direction="less", sesoi=0.2, sides=PRIMARY_SIDES),
        ),
        gates=(
            Gate(name="lr_min_recall", source="data", comparison=">=", threshold=config.gate_recall_band[0],
                 description=f"lowest per-class recall of a pixel-level logistic regression ({lr_scoring}): "
                             "below it a class is barely present in the pixels",
                 hypotheses=("H1", "H2")),
            Gate(name="lr_max_recall", source="data", comparison="<=", threshold=config.gate_recall_band[1],
                 description=f"highest per-class recall of the pixel-level logistic regression ({lr_scoring}): "
                             "above it a linear model on pixels already solves that class and decides a "
                             "per-class claim in advance", hypotheses=("H1", "H2")),
            Gate(name="lr_covid_pneumonia_confusion", source="data", comparison=">=",
                 threshold=config.gate_min_confusion,
                 description=f"pneumonia <-> COVID-19 confusion of the pixel-level logistic regression "
                             f"({lr_scoring}; mean of both directions): without it the paper's question "
                             "which net tells them apart cannot arise", hypotheses=("H2",)),
            Gate(name="covid_test_images", source="data", comparison=">=", threshold=20,
                 description="COVID-19 images in the test set: fewer make its recall move in "
                             "steps too coarse to compare", hypotheses=("H2",)),
        ),
        validity=arm_checks(config),
        headroom=(Headroom(
            hypothesis="H3", multiple=1.0, ceiling_source="data",
            description="the lowest artefact lift a map can be expected to reach is a uniform map's, 1; "
                        "the baseline is the single net's artefact lift on the validation films that "
                        "carry an artefact (mean over units, validation masks), so the room "
                        "(baseline - 1) must be at least the SESOI: a net whose maps do not favour "
                        "the artefacts leaves cropping nothing to reduce"),),
        deviations=(() if config.name == "paper" else
                    (f"preset {config.name}: reduced sizes (see covidnet_siamese/config.py)",))
        + (("batch normalisation in the trunk (the paper names none; see covidnet_siamese/README.md)",)
           if config.batch_norm else ())
        + selection_deviations(config)
        + ((f"head width {config.fc_units} / {config.fc_units // 4} / {config.fc_units // 4} and budget "
            f"(single net {config.final_epochs_single} epochs, siamese net {config.final_epochs_siamese} "
            f"epochs of {config.final_pairs_per_epoch} pairs: the paper's ratio of steps) chosen on pilot data "
            f"seed {PILOT_SEED} by covidnet_siamese/pilot.py from validation data only, frozen before the "
            f"study",) if config.name == "powered" else ()),
    )


def selection_deviations(config: CovidNetSiameseConfig) -> tuple:
    """The protocol's deviations for epoch-selection criteria other than the paper's."""
    out = ()
    if config.select_single != "val_accuracy":
        out += (f"single net: epoch kept by {config.select_single} on the whole validation split "
                f"(paper: validation accuracy, which on the imbalanced split rewards the epoch that "
                f"calls the most films normal)",)
    if config.select_siamese != "val_three_way_accuracy":
        out += (f"siamese net: epoch kept by {config.select_siamese} of the template rule on the whole "
                f"validation split (paper: {config.three_way_trials} three-way trials, still reported)",)
    return out


def arm_checks(config: CovidNetSiameseConfig) -> tuple:
    """Arm validity of every arm, on the whole validation split under the arm's own
    decision rule at its kept epoch (softmax argmax; most similar class template)."""
    from shared.study.protocol import ArmCheck

    return (
        ArmCheck(name="learned_val_accuracy", kind="learned", comparison=">=",
                 threshold=float(config.learned_margin), max_failed_share=float(config.max_failed_share),
                 description="validation accuracy minus the validation split's majority-class rate "
                             "(always normal): an arm below the margin has not learned the task"),
        ArmCheck(name="not_collapsed_onto_one_class", kind="not_collapsed", comparison="<=",
                 threshold=float(config.collapse_share), max_failed_share=float(config.max_failed_share),
                 description="largest share of validation films given one class: above it the arm "
                             "answers (nearly) one class for everything"),
    )

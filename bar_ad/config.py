"""Presets and the frameworks (Table 1 rows and ablations) of the BAR reproduction.

`paper` holds the paper's settings (Seyfioglu et al., MICCAI 2022, Secs. 2-3); where the
paper is silent (epochs, scratch learning rate, CutMix patch size, validation share) the
choice is marked "not stated". `quick` runs in minutes on a CPU, `tiny` in seconds.
"""

import dataclasses

from bar_ad.mixing import BETA_SETTINGS


@dataclasses.dataclass(frozen=True)
class Framework:
    """One row of Table 1 or an ablation.

    Attributes:
        name: str. Short name (store group).
        label: str. Human-readable row name.
        pretrain: bool. Pre-train before fine-tuning.
        views: str. "mix" (t1 = BAR/CutMix + BAM, t2 = cut + shuffle), "ssl" (both cut +
            shuffle), "ssl_bam" (both BAM).
        regions: str. "atlas" (BAR) or "cubes" (multi-patch CutMix), for views="mix".
        contrastive: str. "none", "infonce" (self-supervised, Eq. 1), "continuous"
            (soft labels, Eq. 4) or "supcon" (hard labels, Khosla et al.).
        recon: bool. L1 reconstruction of the anchor from t2 (Eq. 5).
        beta: str. Key of `BETA_SETTINGS` for lambda.
        use_bam: bool. BAM on t1 after the swap.
        freeze_encoder: bool. Fine-tune only the MLP head (transferability ablation).
        sigma: float or None. RBF kernel width of Eq. 4 for this framework (None: the
            config's `sigma`, the paper's 0.8).
        shuffle_labels: bool. Permute the soft labels within each pre-training batch
            before the contrastive loss (a control: do the labels matter?).
        instance_weight: float. Weight of an instance-discrimination (NT-Xent) term added
            to Eq. 4 (0 = the paper's loss; the anchored arm, not in the paper).
    """

    name: str
    label: str
    pretrain: bool = True
    views: str = "mix"
    regions: str = "atlas"
    contrastive: str = "continuous"
    recon: bool = True
    beta: str = "default"
    use_bam: bool = True
    freeze_encoder: bool = False
    sigma: object = None
    shuffle_labels: bool = False
    instance_weight: float = 0.0


# The anchored arm's settings, chosen by bar_ad/pilot.py's rule on pilot seed 100 (probe
# cosine 0.843 <= 0.9, label-distance agreement 0.076, the largest of the candidates
# sigma {0.1, 0.25} x anchor weight {0.5, 1}) and frozen before any study run.
ANCHORED_SIGMA = 0.1
ANCHORED_INSTANCE_WEIGHT = 1.0

FRAMEWORKS = {f.name: f for f in [
    # Table 1
    Framework("scratch", "ViT from scratch", pretrain=False),
    Framework("ssl_contrastive", "Self-supervised: contrastive", views="ssl",
              contrastive="infonce", recon=False),
    Framework("ssl_recon", "Self-supervised: recon", views="ssl", contrastive="none"),
    Framework("ssl_contrastive_recon", "Self-supervised: contrastive + recon", views="ssl",
              contrastive="infonce"),
    # CutMix as the paper compares it: cubes swapped, no brain-aware masking (BAM is BAR's).
    Framework("cutmix", "Supervised: CutMix", regions="cubes", recon=False, use_bam=False),
    Framework("cutmix_recon", "Supervised: CutMix + recon", regions="cubes", use_bam=False),
    Framework("bar", "Supervised: BAR", recon=False),
    Framework("bar_recon", "Supervised: BAR + recon"),
    # Ablations (Sec. 4)
    Framework("ssl_bam_contrastive_recon", "Ablation: self-supervised with BAM instead of cuts",
              views="ssl_bam", contrastive="infonce"),
    Framework("bar_recon_beta_left", "Ablation: BAR + recon, Beta(0.2, 0.8)", beta="left_skewed"),
    Framework("bar_recon_beta_uniform", "Ablation: BAR + recon, Beta(1, 1)", beta="uniform"),
    Framework("bar_recon_frozen", "Ablation: BAR + recon, frozen encoder + MLP",
              freeze_encoder=True),
    Framework("supcon_hard_recon", "Ablation: hard-label SupCon + recon", views="ssl",
              contrastive="supcon"),
    Framework("supcon_hard_recon_frozen", "Ablation: hard-label SupCon + recon, frozen encoder",
              views="ssl", contrastive="supcon", freeze_encoder=True),
    # Not in the paper: Eq. 4 with a kernel narrow enough for soft labels in [0, 1]
    # (sigma = 0.8 weighs labels 0 and 1 at 0.46, see the README).
    Framework("bar_recon_sigma025", "Ablation (ours): BAR + recon, sigma 0.25", sigma=0.25),
    # Control (not in the paper): the same pre-training with the soft labels permuted
    # within each batch; if the labels matter, BAR + recon beats it.
    Framework("bar_recon_shuffled", "Control (ours): BAR + recon, soft labels shuffled",
              shuffle_labels=True),
    # Not in the paper: Eq. 4 on a kernel sharp enough for labels in [0, 1], anchored by an
    # instance-discrimination term so that collapse is off the optimum (README, "Finding");
    # kernel width and anchor weight chosen on pilot seed 100 from pre-training
    # diagnostics only (bar_ad/pilot.py, README "Anchored arm"), then frozen.
    Framework("bar_anchored_recon", "Ours: BAR + recon, Eq. 4 at sigma 0.1 + instance anchor",
              sigma=ANCHORED_SIGMA, instance_weight=ANCHORED_INSTANCE_WEIGHT),
    Framework("bar_anchored_recon_shuffled",
              "Control (ours): the anchored BAR + recon, soft labels shuffled",
              sigma=ANCHORED_SIGMA, instance_weight=ANCHORED_INSTANCE_WEIGHT,
              shuffle_labels=True),
]}
TABLE1 = ("scratch", "ssl_contrastive", "ssl_recon", "ssl_contrastive_recon", "cutmix",
          "cutmix_recon", "bar", "bar_recon")
ABLATIONS = ("ssl_bam_contrastive_recon", "bar_recon_beta_left", "bar_recon_beta_uniform",
             "bar_recon_frozen", "supcon_hard_recon", "supcon_hard_recon_frozen",
             "bar_recon_sigma025", "bar_recon_shuffled", "bar_anchored_recon",
             "bar_anchored_recon_shuffled")
# The powered study's arms: Table 1's scratch, best self-supervised and the two
# supervised + recon rows, the shuffled-label control, the sigma ablation, and the
# anchored soft-label arm with its own shuffled-label control.
POWERED_ARMS = ("scratch", "ssl_contrastive_recon", "cutmix_recon", "bar_recon",
                "bar_recon_shuffled", "bar_recon_sigma025", "bar_anchored_recon",
                "bar_anchored_recon_shuffled")

# The metrics of Table 1 (AD = positive class), in the order of PAPER_TABLE1's pairs.
METRICS = ("precision", "recall", "accuracy")
# Table 1 of the paper: precision, recall, accuracy (%), mean and std over 5 folds.
PAPER_TABLE1 = {
    "scratch": ((74.38, 7.0), (85.6, 3.1), (80.83, 3.0)),
    "ssl_contrastive": ((78.42, 4.5), (81.18, 1.6), (80.1, 1.9)),
    "ssl_recon": ((78.6, 5.0), (85.57, 1.1), (82.69, 2.5)),
    "ssl_contrastive_recon": ((80.2, 4.1), (85.77, 2.0), (83.4, 1.7)),
    "cutmix": ((83.06, 4.8), (87.08, 3.5), (85.29, 2.8)),
    "cutmix_recon": ((84.6, 3.8), (87.9, 2.2), (86.4, 1.0)),
    "bar": ((84.7, 3.3), (87.6, 2.1), (86.3, 1.1)),
    "bar_recon": ((86.24, 3.0), (88.08, 2.3), (87.22, 0.8)),
}
# Ablation accuracies the paper reports (Sec. 4).
PAPER_ABLATIONS = {
    "ssl_bam_contrastive_recon": 83.54, "bar_recon_beta_left": 86.9,
    "bar_recon_beta_uniform": 87.2, "bar_recon_frozen": 85.2,
    "supcon_hard_recon": 84.7, "supcon_hard_recon_frozen": 83.7,
}


@dataclasses.dataclass(frozen=True)
class BarConfig:
    """Every setting of a run.

    Attributes (data):
        grid: int. Working grid edge (paper 96).
        gen_voxel_mm: float. Voxel size the synthetic scans are written at.
        n_ad, n_cn: int. Synthetic subjects (paper 246 / 597).
        scans_per_subject: (int, int). Inclusive range (paper: 3306 scans, 3.9 per subject).
        atlas_source: str. "auto", "packages" or "mricron" (see `bar_ad.atlas`).
        n_folds: int. Subject-level folds (paper 5).
        folds_run: int or None. Run only the first k folds (None = all).
        val_fraction: float. Share of training subjects held out to pick the fine-tuning
            epoch (paper: a fold selects the parameters; share not stated).
        group_map: str. Rows of the ADNI subgroups EMCI / LMCI / SMC: "skip" (left out,
            counted in the report) or "adni" (EMCI, LMCI -> MCI; SMC -> CN); see
            `bar_ad.data.GROUP_MAPS`.
        design: str. "cv" (the paper's subject-level k-fold cross-validation) or
            "draws" (the powered study: one fixed test set of `n_test_subjects`
            subjects, and `n_draws` independent training sets of `draw_subjects`
            subjects from the rest, each a pairing unit).
        n_test_subjects, n_draws, draw_subjects: int. Sizes of the "draws" design.
        val_subjects: int. "draws" design: pool subjects outside a unit's training draw
            (stratified, never the test set, the same for every arm of the unit) on which
            the fine-tuning epoch is selected (0: no selection, the last epoch is kept).
        ad_atrophy, severity, region_std, ad_region_jitter: synthetic cohort's effect
            size and heterogeneity (see `bar_ad.phantom.CohortSpec`).
        center_inputs: bool. Subtract the training scans' mean volume and divide by their
            std before pre-training and fine-tuning (not in the paper; see the README).
    Attributes (model): patch_size, width, depth, num_heads, mlp_dim, class_token,
        dropout, decoder_hidden, head_units (paper: 16, 768, 10, 12, 3072, True, 0, 16,
        (128, 64)).
    Attributes (training):
        pretrain_epochs, finetune_epochs: int (not stated in the paper).
        pretrain_batch, finetune_batch: int (paper 4 and 12).
        pretrain_lr, finetune_lr: float (paper 1e-4 and 3e-5).
        scratch_lr: float. From-scratch training (not stated; the pre-training rate).
        reliance_scans: int. Test scans (half AD, half CN) on which the first fold's or
            draw's classifiers are asked which atlas regions they rely on
            (`bar_ad.region_reliance`; 0: not measured).
        select_on: str. The validation quantity whose best epoch is kept when there is a
            validation set: "val_loss" (lowest BCE) or "val_auc" (highest AUC, the powered
            study's endpoint).
        sigma: float. RBF kernel width on soft labels (paper 0.8).
        temperature: float. InfoNCE temperature (not stated; y-aware InfoNCE's 0.1).
        supcon_temperature: float. Hard-label SupCon (Khosla et al. 0.07).
        contrastive_weight, recon_weight: float. alpha1, alpha2 (paper 1, 1).
        bam_fraction: float. Share of untouched regions BAM fills (paper 0.2).
        cutmix_cells: int. CutMix cubes per axis (not stated; 6 = the 16^3 ViT patch at 96).
        shuffle_blocks: int or None. Local-pixel-shuffle blocks (None = the paper's 10;
            fewer in quick/tiny, where tracing the shuffle graph costs about a second per
            block and pre-training run).
        frameworks: tuple of framework names run by default.
    """

    preset: str = "paper"
    grid: int = 96
    gen_voxel_mm: float = 2.0
    n_ad: int = 246
    n_cn: int = 597
    scans_per_subject: tuple = (3, 5)
    atlas_source: str = "auto"
    n_folds: int = 5
    folds_run: object = None
    val_fraction: float = 0.15
    group_map: str = "skip"
    design: str = "cv"
    n_test_subjects: int = 400
    n_draws: int = 6
    draw_subjects: int = 60
    val_subjects: int = 0
    ad_atrophy: float = 0.4
    severity: tuple = (0.25, 1.0)
    region_std: float = 0.0
    ad_region_jitter: float = 0.0
    center_inputs: bool = False
    patch_size: int = 16
    width: int = 768
    depth: int = 10
    num_heads: int = 12
    mlp_dim: int = 3072
    class_token: bool = True
    dropout: float = 0.0
    decoder_hidden: int = 16
    head_units: tuple = (128, 64)
    pretrain_epochs: int = 100
    finetune_epochs: int = 50
    pretrain_batch: int = 4
    finetune_batch: int = 12
    pretrain_lr: float = 1e-4
    finetune_lr: float = 3e-5
    scratch_lr: float = 1e-4
    select_on: str = "val_loss"
    reliance_scans: int = 64
    sigma: float = 0.8
    temperature: float = 0.1
    supcon_temperature: float = 0.07
    contrastive_weight: float = 1.0
    recon_weight: float = 1.0
    bam_fraction: float = 0.2
    cutmix_cells: int = 6
    shuffle_blocks: object = None
    frameworks: tuple = TABLE1

    def beta(self, framework: Framework):
        return BETA_SETTINGS[framework.beta]


PRESETS = {
    "paper": BarConfig(),
    "quick": BarConfig(
        preset="quick", grid=32, gen_voxel_mm=5.0, n_ad=24, n_cn=58, scans_per_subject=(2, 3),
        n_folds=2, val_fraction=0.0, center_inputs=True, patch_size=8, width=64, depth=2,
        num_heads=4, mlp_dim=128, pretrain_epochs=10, finetune_epochs=20, pretrain_batch=8,
        finetune_batch=12, pretrain_lr=1e-3, finetune_lr=5e-4, scratch_lr=1e-3,
        shuffle_blocks=4,
        frameworks=("scratch", "ssl_contrastive_recon", "cutmix_recon", "bar_recon"),
    ),
    # The powered data-starved study (<= 45 min on an idle 2-core CPU): one scan per
    # subject; the cohort's difficulty (atrophy amplitude, regional variation and AD
    # heterogeneity) was set once so that the linear region-mean baseline lands in
    # POWERED_LINEAR_BAND and no single region decides (POWERED_MAX_SINGLE_AUC), then
    # frozen; the gates check it on the training pool of every run. The schedule
    # (pre-training 20 epochs at the paper's 1e-4, fine-tuning at 3e-4, scratch at 1e-3,
    # epoch of best validation AUC) is the schedule pilot's choice on data seed 100
    # (docs/pilots/bar_ad_schedule_seed100.json), frozen before any study run.
    "powered": BarConfig(
        preset="powered", grid=32, gen_voxel_mm=5.0, n_ad=300, n_cn=500,
        scans_per_subject=(1, 1), design="draws", n_test_subjects=400, n_draws=6,
        draw_subjects=60, val_subjects=60, select_on="val_auc", ad_atrophy=0.3,
        severity=(0.15, 1.0), region_std=0.06, ad_region_jitter=0.6, val_fraction=0.0,
        center_inputs=True, patch_size=8, width=64,
        depth=2, num_heads=4, mlp_dim=128, pretrain_epochs=20, finetune_epochs=20,
        pretrain_batch=8, finetune_batch=12, pretrain_lr=1e-4, finetune_lr=3e-4,
        scratch_lr=1e-3, shuffle_blocks=4, frameworks=POWERED_ARMS,
    ),
    "tiny": BarConfig(
        preset="tiny", grid=16, gen_voxel_mm=5.0, n_ad=3, n_cn=5, scans_per_subject=(1, 2),
        n_folds=2, folds_run=1, val_fraction=0.0, center_inputs=True, patch_size=8, width=16,
        depth=1, num_heads=2, mlp_dim=32,
        head_units=(16, 8), pretrain_epochs=1, finetune_epochs=1, pretrain_batch=4,
        finetune_batch=4, pretrain_lr=1e-3, finetune_lr=1e-3, scratch_lr=1e-3,
        shuffle_blocks=1, frameworks=("scratch", "bar_recon"),
    ),
}


def get_config(preset: str, **overrides) -> BarConfig:
    """A preset with optional field overrides (unknown fields raise ValueError)."""
    if preset not in PRESETS:
        raise ValueError(f"preset must be one of {sorted(PRESETS)}. Received: preset={preset!r}")
    fields = {f.name for f in dataclasses.fields(BarConfig)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise ValueError(f"Unknown config field(s) {unknown}; known: {sorted(fields)}")
    return dataclasses.replace(PRESETS[preset], **overrides)


def get_framework(name: str) -> Framework:
    if name not in FRAMEWORKS:
        raise ValueError(f"Unknown framework {name!r}; expected one of {', '.join(FRAMEWORKS)}")
    return FRAMEWORKS[name]


# The paper's claims on Table 1 (accuracy, %): (id, first arm, second arm, statement). The
# effect is first minus second; a hypothesis is declared when both frameworks run.
CLAIMS = (
    ("H1", "bar_recon", "cutmix_recon", "BAR + recon is ahead of CutMix + recon (Table 1)"),
    ("H2", "bar", "cutmix", "BAR is ahead of CutMix (Table 1)"),
    ("H3", "bar_recon", "ssl_contrastive_recon",
     "supervised pre-training (BAR + recon) is ahead of the best self-supervised row "
     "(contrastive + recon) (Table 1)"),
    ("H4", "ssl_contrastive_recon", "scratch",
     "self-supervised pre-training (contrastive + recon) is ahead of the ViT from scratch (Table 1)"),
    ("H5", "bar_recon", "scratch", "BAR + recon, the best row, is ahead of the ViT from scratch (Table 1)"),
)
SESOI_ACCURACY = 1.0  # percentage points of accuracy
MIN_TEST_FOLD_SCANS = 50


# The powered study's claims on the AUC of the fixed test set: (id, first arm, second arm,
# statement, family). H1: BAR + recon is the best row; H2: supervised pre-training ahead of
# self-supervised, self-supervised ahead of scratch; C1: the soft labels matter; A1: the
# kernel width (an ablation, two-sided).
POWERED_CLAIMS = (
    ("H1a", "bar_recon", "cutmix_recon", "BAR + recon is ahead of CutMix + recon (Table 1), both "
     "with Eq. 4 as printed at sigma 0.8", "H1"),
    ("H1b", "bar_recon", "ssl_contrastive_recon",
     "BAR + recon (Eq. 4 as printed, sigma 0.8) is ahead of self-supervised contrastive + "
     "recon (Table 1)", "H1"),
    ("H1c", "bar_recon", "scratch", "BAR + recon (Eq. 4 as printed, sigma 0.8) is ahead of the "
     "ViT from scratch (Table 1)", "H1"),
    ("H2a", "cutmix_recon", "ssl_contrastive_recon",
     "supervised pre-training (CutMix + recon, Eq. 4 as printed at sigma 0.8) is ahead of "
     "self-supervised (Table 1)", "H2"),
    ("H2b", "ssl_contrastive_recon", "scratch",
     "self-supervised pre-training is ahead of the ViT from scratch (Table 1)", "H2"),
    ("C1", "bar_recon", "bar_recon_shuffled",
     "the soft labels matter: BAR + recon is ahead of the same pre-training with the labels "
     "shuffled within each batch (control, not in the paper)", "control"),
    ("H3a", "bar_anchored_recon", "ssl_contrastive_recon",
     "BAR's soft labels on an objective that can learn them (Eq. 4 at sigma 0.1 with an "
     "instance anchor; not in the paper) are ahead of self-supervised contrastive + recon",
     "anchored"),
    ("H3b", "bar_anchored_recon", "scratch",
     "the anchored BAR + recon (not in the paper) is ahead of the ViT from scratch", "anchored"),
    ("C2", "bar_anchored_recon", "bar_anchored_recon_shuffled",
     "the soft labels matter under the anchored objective: it is ahead of the same "
     "pre-training with the labels shuffled within each batch (control)", "control"),
    ("A1", "bar_recon_sigma025", "bar_recon",
     "a kernel narrow enough for labels in [0, 1] (sigma 0.25) changes BAR + recon "
     "(ablation, not in the paper; the paper's sigma is 0.8)", "ablation"),
)
SESOI_AUC = 0.02
POWERED_LINEAR_BAND = (85.0, 91.0)  # % accuracy of the linear region-mean baseline
POWERED_MAX_SINGLE_AUC = 0.95
MIN_TEST_SUBJECTS = 400


def paper_deviations(config: BarConfig) -> tuple:
    """Where a run departs from the paper (written to protocol.json and claims.json)."""
    from bar_ad.atlas import atlas_files

    try:
        source = atlas_files(config.atlas_source)["source"]
    except FileNotFoundError:
        source = "none found"
    out = []
    if config.preset != "paper":
        out.append(f"preset {config.preset}: reduced grid ({config.grid}^3), ViT (width "
                   f"{config.width}, depth {config.depth}), cohort, epochs and folds "
                   "(see bar_ad/config.py)")
    if config.center_inputs:
        out.append("inputs centred on the training scans' mean volume (not in the paper; see "
                   "the README)")
    if source.startswith("packages"):
        out.append("atlas: AAL2 merged to 64 regions (the paper: 62, the original AAL; AAL2 "
                   "keeps eight vermis parts unpaired); the original AAL is used when "
                   "Debian's mricron-data is installed (atlas_source='mricron')")
    out += [
        "synthetic cohort instead of ADNI (bar_ad/phantom.py)",
        "white matter and ventricles, which AAL leaves unlabelled, join their nearest region "
        "so that BAR's regions tile the brain",
        "largest hole sizes of the t2 cuts (32 / 64 voxels at 96^3) from MONAI's "
        "self-supervised tutorial; the paper gives the holes and the smallest sizes only",
        f"CutMix cubes: {config.cutmix_cells} per axis ({config.grid // config.cutmix_cells} "
        f"voxels; the ViT patch is {config.patch_size})",
        "not stated in the paper and chosen here: epochs, scratch learning rate, InfoNCE "
        "temperature, validation share",
    ]
    if config.shuffle_blocks is not None:
        out.append(f"local pixel shuffle: {config.shuffle_blocks} blocks (the paper: 10)")
    return tuple(out)


def declared_claims(frameworks) -> tuple:
    """The rows of `CLAIMS` whose two frameworks are both in `frameworks`."""
    frameworks = set(frameworks)
    return tuple(c for c in CLAIMS if c[1] in frameworks and c[2] in frameworks)


def folds_run(config: BarConfig) -> int:
    """How many subject-level folds a run trains and tests."""
    return config.n_folds if config.folds_run is None else min(int(config.folds_run), config.n_folds)


# An encoder whose [cls] tokens of different held-out scans sit at a mean cosine above
# this bound encodes every scan alike: its arm answers nothing about what its
# pre-training adds. Declared after the kept powered runs (soft-label arms 0.97-0.99,
# self-supervised InfoNCE 0.34-0.46 on training batches): any bound in 0.5-0.96 sorts
# them the same way.
COLLAPSE_COSINE_BOUND = 0.9
PROBE_SCANS = 16


def collapse_check(arms):
    """The arm-validity check of every pre-trained arm among `arms` (empty when none)."""
    from shared.study.protocol import ArmCheck

    pretrained = tuple(a for a in arms if get_framework(a).pretrain)
    if not pretrained:
        return ()
    return (ArmCheck(
        name="cls_not_collapsed", kind="not_collapsed", comparison="<=",
        threshold=COLLAPSE_COSINE_BOUND, arms=pretrained, max_failed_share=0.0,
        description=f"mean pairwise cosine of the pre-trained encoder's [cls] tokens over a "
                    f"fixed batch of up to {PROBE_SCANS} unaugmented scans held out of the "
                    f"unit's pre-training (pool scans outside the training draw; in the "
                    f"k-fold design the validation subjects, else training scans), never "
                    f"the test set: above {COLLAPSE_COSINE_BOUND} the encoder has collapsed"),)


def study_units(config: BarConfig, seed: int = 0) -> tuple:
    """The units of a run's study: one per (seed, fold) "s<seed>-f<fold>", or per
    (seed, training draw) "s<seed>-d<draw>" in the "draws" design."""
    if config.design == "draws":
        return tuple(f"s{int(seed)}-d{k}" for k in range(config.n_draws))
    return tuple(f"s{int(seed)}-f{k}" for k in range(folds_run(config)))


def schedule_deviation(config: BarConfig) -> tuple:
    """The powered training schedule and its selection, as a declared deviation (empty
    without validation scans)."""
    if config.design != "draws" or config.val_subjects <= 0:
        return ()
    return (f"training schedule: pre-training {config.pretrain_epochs} epochs at "
            f"{config.pretrain_lr:g} (the paper's rate; epochs not stated), fine-tuning "
            f"{config.finetune_epochs} epochs at {config.finetune_lr:g} (paper 3e-05), from "
            f"scratch at {config.scratch_lr:g}, keeping the epoch of best {config.select_on} "
            f"on {config.val_subjects} pool subjects outside each draw (stratified, the same "
            "for every arm, never the test set); epochs and rates chosen on pilot data seed "
            "100 by the rules of bar_ad/schedule_pilot.py, frozen before any study run",)


def powered_protocol(config: BarConfig, seed: int = 0, frameworks=None):
    """The powered study ("draws" design) a run declares before training.

    One unit is a training draw: `draw_subjects` subjects drawn (stratified) from the
    pool left after the fixed test set. Every arm of a draw trains on the same subjects
    with the same seed and is scored on the same test set, so arms are compared draw by
    draw (paired t-test on the AUC, Holm within a family).

    Raises:
        ValueError: no powered claim compares two of `frameworks`.
    """
    from shared.study import Gate, Hypothesis, Protocol

    arms = tuple(config.frameworks if frameworks is None else frameworks)
    claims = tuple(c for c in POWERED_CLAIMS if c[1] in arms and c[2] in arms)
    if not claims:
        raise ValueError(f"no claim of the powered study compares two of the frameworks run. "
                         f"Received: frameworks={list(arms)}")
    hypotheses = tuple(
        Hypothesis(id=hid, statement=text, endpoint="auc", arms=(a, b),
                   direction="two-sided" if family == "ablation" else "greater",
                   sesoi=SESOI_AUC, test="paired_t", family=family)
        for hid, a, b, text, family in claims)
    lo, hi = POWERED_LINEAR_BAND
    gates = (
        Gate(name="test_subjects", source="data", comparison=">=", threshold=MIN_TEST_SUBJECTS,
             description="subjects in the fixed test set: with 400 the AUC's standard error is "
                         "about 0.015, below the smallest effect of interest (0.02)"),
        Gate(name="linear_baseline_min", source="baseline", comparison=">=", threshold=lo,
             description="cross-validated accuracy (%) of a logistic regression on the atlas "
                         "regions' mean intensities, on the training pool: the cohort must "
                         "not be too hard for the data-starved arms"),
        Gate(name="linear_baseline_max", source="baseline", comparison="<=", threshold=hi,
             description="the same baseline must leave room above it (ceiling)"),
        Gate(name="best_single_region_auc", source="baseline", comparison="<=",
             threshold=POWERED_MAX_SINGLE_AUC,
             description="AUC of the single best region's mean on the training pool: "
                         "atrophy is spread over several regions, the task is not one feature"),
    )
    deviations = (
        "powered design (not the paper's): a fixed test set and repeated data-starved "
        "training draws instead of 5-fold cross-validation of the whole cohort; AUC as "
        "endpoint; one scan per subject",
        "synthetic cohort with regional variation and heterogeneous atrophy "
        "(bar_ad/phantom.py), difficulty set by the gates' bands",
    ) + ((f"anchored arm (not in the paper): Eq. 4 at sigma {ANCHORED_SIGMA:g} plus "
          f"{ANCHORED_INSTANCE_WEIGHT:g} x an instance-discrimination (NT-Xent) term; both "
          f"settings chosen on pilot data seed 100 from pre-training diagnostics only (probe "
          f"collapse <= {COLLAPSE_COSINE_BOUND:g}, then the largest label-distance agreement "
          f"on held-out pool scans; bar_ad/pilot.py), frozen before any study run",)
         if "bar_anchored_recon" in arms else ()) + schedule_deviation(config) \
        + paper_deviations(config)
    return Protocol(
        paper="bar_ad", preset=config.preset, arms=arms,
        pairing_unit="training draw 's<seed>-d<draw>': the same training subjects, the same "
                     "input centring, the same initial weights and the same training seed "
                     "(batch order, mixing and view draws) for every arm; all arms are scored on "
                     "the one fixed test set",
        units=study_units(config, seed),
        test_set={"source": "stratified random subjects of the cohort (seeded by the run seed), "
                            "one scan each, held out before any draw; never used to choose "
                            "anything",
                  "seed": int(seed), "n_subjects": int(config.n_test_subjects),
                  "draws": int(config.n_draws), "draw_subjects": int(config.draw_subjects),
                  "cohort": f"synthetic, {config.n_ad} AD / {config.n_cn} CN subjects drawn "
                            f"from the seed, unless the run reads --data"},
        hypotheses=hypotheses, gates=gates, training_sizes=(int(config.draw_subjects),),
        deviations=deviations, validity=collapse_check(arms),
    )


def study_protocol(config: BarConfig, seed: int = 0, frameworks=None):
    """The study a run declares before training (see docs/studies.md).

    One unit is a (seed, fold) pair: every framework of that unit trains and is tested on
    the same subject-level split with the same training seed, so the frameworks are
    compared fold by fold (paired t-test: with 5 folds the exact two-sided Wilcoxon p
    cannot fall below 2/32 = 0.0625). Only the claims whose two frameworks run are declared.

    Args:
        config: BarConfig.
        seed: int, default 0. The run's seed (cohort, folds, training).
        frameworks: sequence of str, optional. The frameworks that train (default
            `config.frameworks`).

    Raises:
        ValueError: no claim of the paper compares two of `frameworks`.
    """
    from shared.study import Gate, Hypothesis, Protocol

    if config.design == "draws":
        return powered_protocol(config, seed, frameworks)
    arms = tuple(config.frameworks if frameworks is None else frameworks)
    claims = declared_claims(arms)
    if not claims:
        raise ValueError(f"no claim of the paper compares two of the frameworks run. "
                         f"Received: frameworks={list(arms)}")
    acc = {fw: PAPER_TABLE1[fw][2][0] for fw in PAPER_TABLE1}
    hypotheses = tuple(
        Hypothesis(id=hid, statement=f"{text}: {acc[a]:.1f} vs {acc[b]:.1f} %", endpoint="accuracy",
                   arms=(a, b), direction="greater", sesoi=SESOI_ACCURACY, test="paired_t",
                   paper_value=f"{acc[a]:.2f} vs {acc[b]:.2f}")
        for hid, a, b, text in claims)
    deviations = paper_deviations(config)
    n = folds_run(config)
    return Protocol(
        paper="bar_ad", preset=config.preset, arms=arms,
        pairing_unit="(seed, fold) 's<seed>-f<fold>': the same cohort (drawn from the seed), the "
                     "same subject-level train / test split, the same input centring and the same "
                     "training seed seed * 1000 + 10 fold (batch order, mixing and view draws) for "
                     "every framework; models of one kind start from the same initial weights",
        units=study_units(config, seed),
        test_set={"source": "subject-level stratified k-fold cross-validation (StratifiedGroupKFold "
                            "shuffled with the run seed): each fold's held-out subjects are its test "
                            "scans, never used to choose anything",
                  "seed": int(seed), "n_folds": int(config.n_folds), "folds_run": int(n),
                  "cohort": f"synthetic, {config.n_ad} AD / {config.n_cn} CN subjects drawn from the "
                            f"seed, unless the run reads --data"},
        hypotheses=hypotheses,
        gates=(Gate(name="min_test_fold_scans", source="data", comparison=">=",
                    threshold=MIN_TEST_FOLD_SCANS,
                    description="scans in the smallest test fold run (counted from the split before "
                                "training): with fewer than 50 one scan moves a fold's accuracy by "
                                "more than 2 points, twice the smallest effect of interest"),),
        deviations=tuple(deviations), validity=collapse_check(arms),
    )

"""Presets of the HR-pQCT motion-grading experiment.

`paper` holds the settings the thesis and Walle et al. give (XtremeCT II scans
of 512 x 512 x 168 voxels, 8 equally spaced slices per scan, an ensemble of 10
graders, the thesis' 611 radius and 499 tibia scans with its grade frequencies,
750 views over 180 degrees so the neighbouring view is 0.24 degrees away).
Simulating and training at that size takes many hours of CPU time. `quick` is a
CPU run of the same protocol in a few minutes on two cores: 128 x 128 slices
(0.625 mm pixels, fine enough for motion of a fraction of a millimetre to leave
streaks), 240 views (enough for a 128-pixel grid: no view-aliasing streaks in
still scans), 8-slice stacks, 60 scans per site, narrow networks trained for
20 epochs, one network per ensemble (the slice votes of one network; `--ensemble-size`
adds more at the cost of time), 3 seeds per arm. `tiny` takes seconds (tests, the notebook in CI).
"""

import dataclasses


@dataclasses.dataclass(frozen=True)
class HrpqctConfig:
    """Every setting of one run.

    Attributes:
        preset: str. Name of the preset.
        image_size: int. Reconstructed slice grid (pixels; paper 512).
        input_size: int, optional. Slice size of the graders' input: every scan's
            80 mm field is resampled to it (`hrpqct.scan_input`); None: `image_size`.
        oversample: int. The phantom is drawn this many times finer than the
            reconstruction grid (keeps the projector free of aliasing).
        stack_slices: int. Slices simulated per scan (paper stack: 168).
        slices_per_scan: int. Equally spaced slices graded per scan (thesis: 8).
        n_projections: int. Views over 180 degrees (XtremeCT: 750, step 0.24 deg).
        field_of_view_mm: float. Width of the reconstructed field (mm).
        projection_noise: float. Gaussian noise on the line integrals.
        fbp_window: str. Apodisation of the ramp filter.
        scans_per_site: dict site -> int (thesis: radius 611, tibia 499).
        grade_counts: "thesis" (per-site frequencies of the thesis' table) or
            "uniform".
        rater_noise: float. Log-normal perception noise of the simulated raters.
        prefilter_mm: float. Gaussian prefilter sigma before grading, in mm, applied
            in each file's own pixels before resampling (`hrpqct.scan_input`;
            Walle: 0.8 voxels of the XtremeCT II's 60.7 um = 0.0486 mm; on the quick
            grid's 0.625 mm pixels that is 0.08 pixels, so the quick, powered and tiny
            presets leave it out).
        baseline_filters: 5 ints. Widths of Walle's five conv + pool stages.
        proposed_filters: ints. Widths of the proposed network's residual stages.
        dense_units: int. Hidden dense layer of both networks.
        activation: "relu" or "elu" (proposed network).
        ensemble_size: int. Models per ensemble (Walle: 10; 11 here, odd, so a slice
            vote between two grades cannot tie).
        vote_size: int. Odd. The declared secondary endpoint "vote": the networks of
            `vote_size` consecutive units of an arm graded together as Walle's
            ensemble (slice votes, 75 % confidence rule); units // vote_size votes.
        seeds: int. Repetitions (independent ensembles) per arm for the comparison.
        epochs, patience, batch_size, learning_rate: training (Adam; the epoch of
            the best validation kappa kept; stops after `patience` epochs without a
            better one, so patience >= epochs trains every network for `epochs`).
        class_weight_cap: float. Largest class weight (rare grades 4-5).
        rotation_p, rotation_deg, noise_p, noise_stddev: augmentation (the
            noise is added to the standardised slices; 0.005 standard
            deviations is about 0.001 / cm, below the streaks of grade 2).
        val_fraction, test_fraction: scan-level split fractions.
        confidence_threshold: float. Scans below it go to manual review (Walle: 0.75).
        gradcam_slices: int. Slices shown in the Grad-CAM figure.
        min_high_grade_test_scans: int. Gate of the rescan claim: test scans of
            consensus grade 4-5 needed (the powered preset: 40).
    """

    preset: str
    image_size: int = 512
    input_size: object = None
    oversample: int = 2
    stack_slices: int = 168
    slices_per_scan: int = 8
    n_projections: int = 750
    field_of_view_mm: float = 80.0
    projection_noise: float = 0.002
    fbp_window: str = "shepp-logan"
    scans_per_site: tuple = (("radius", 611), ("tibia", 499))
    grade_counts: str = "thesis"
    rater_noise: float = 0.3
    prefilter_mm: float = 0.8 * 0.0607
    baseline_filters: tuple = (32, 64, 128, 256, 256)
    proposed_filters: tuple = (32, 64, 128, 256)
    dense_units: int = 128
    activation: str = "relu"
    ensemble_size: int = 11
    vote_size: int = 3
    seeds: int = 5
    epochs: int = 100
    patience: int = 10
    batch_size: int = 32
    learning_rate: float = 1e-4
    class_weight_cap: float = 10.0
    rotation_p: float = 0.5
    rotation_deg: float = 10.0
    noise_p: float = 0.5
    noise_stddev: float = 0.005
    val_fraction: float = 0.15
    test_fraction: float = 0.25
    confidence_threshold: float = 0.75
    gradcam_slices: int = 8
    min_high_grade_test_scans: int = 5

    @property
    def sites(self) -> dict:
        return dict(self.scans_per_site)

    @property
    def model_size(self) -> int:
        """Slice size of the graders' input (`input_size`, or the grid when None)."""
        return int(self.image_size if self.input_size is None else self.input_size)


# Sizing of the powered study (`shared.stats.units_for_mde`): H1's smallest effect of
# interest, 0.05 in kappa, and a planning value for the SD of the unit-wise kappa
# differences (proposed - baseline). The quick preset's eight graders per arm spread by
# SD 0.14-0.15 each on 73 training scans with one split; 0.06 was assumed for the first
# powered runs, whose unit-wise differences had SD 0.067 (seed 0) and 0.062 (seed 1), as
# their 95 % intervals imply (README). Their mean, 0.065, sizes the design now: 12 units
# give 80 % power for a one-sided paired t-test at the SESOI.
POWERED_SESOI = 0.05
POWERED_SD_DIFF = 0.065
# Sides of the test the powered units are sized for and of H1's test (`study_protocol`):
# one-sided, so the test run is the test sized.
PRIMARY_SIDES = 1


def powered_units(sesoi=POWERED_SESOI, sd_diff=POWERED_SD_DIFF) -> int:
    """Units the powered preset runs: `units_for_mde` for a paired t-test with
    `PRIMARY_SIDES` sides (one-sided)."""
    from shared.stats import units_for_mde

    return units_for_mde(sesoi, sd_diff, alternative="greater" if PRIMARY_SIDES == 1 else "two-sided",
                         test="paired_t")


POWERED_UNITS = 12

PRESETS = {
    "paper": HrpqctConfig(preset="paper"),
    # The demo's preset: 12 epochs (patience 4, as powered) keep `medrepro demo` within
    # 15 minutes; it was 20 (patience 8) before, a cut for time only.
    "quick": HrpqctConfig(
        preset="quick", image_size=128, stack_slices=8, n_projections=240,
        scans_per_site=(("radius", 60), ("tibia", 60)), prefilter_mm=0.0, baseline_filters=(8, 8, 16, 16, 32),
        proposed_filters=(8, 16, 32), dense_units=32, ensemble_size=1, seeds=3, epochs=12, patience=12,
        batch_size=32, learning_rate=1e-3, class_weight_cap=3.0),
    # The powered study: the quick grid, a cohort large enough for a 500-scan fixed test
    # set holding about 45 scans of grade 4-5 (radius-heavy: radius scans are graded 4-5
    # twice as often), 350 training scans per unit, and POWERED_UNITS units. Both arms
    # train the same 28 epochs (no early stopping) and keep the epoch of best validation
    # kappa; the slices are resampled to 96 pixels. Chosen on pilot data seed 100 from
    # validation losses only (hrpqct/pilot.py, README): at 128 pixels the baseline's
    # validation loss settled by 28 epochs, which 12 units cannot pay for within 45 minutes
    # (47 min estimated); at 96 pixels it settled by 28 too, 31 min estimated.
    "powered": HrpqctConfig(
        preset="powered", image_size=128, input_size=96, stack_slices=8, n_projections=240,
        scans_per_site=(("radius", 600), ("tibia", 400)), prefilter_mm=0.0, baseline_filters=(8, 8, 16, 16, 32),
        proposed_filters=(8, 16, 32), dense_units=32, ensemble_size=1, seeds=POWERED_UNITS, epochs=28, patience=28,
        batch_size=64, learning_rate=1e-3, class_weight_cap=3.0, val_fraction=0.15, test_fraction=0.5,
        min_high_grade_test_scans=40),
    "tiny": HrpqctConfig(
        preset="tiny", image_size=32, stack_slices=8, n_projections=48,
        scans_per_site=(("radius", 12), ("tibia", 12)), grade_counts="uniform", prefilter_mm=0.0,
        baseline_filters=(4, 4, 8, 8, 8), proposed_filters=(4, 8), dense_units=8,
        ensemble_size=1, vote_size=1, seeds=2, epochs=1, patience=1, batch_size=16, learning_rate=2e-3,
        gradcam_slices=4),
}


def get_config(preset: str, **overrides) -> HrpqctConfig:
    """The named preset with fields replaced by `overrides`."""
    if preset not in PRESETS:
        raise ValueError(f"preset must be one of {sorted(PRESETS)}. Received: preset={preset!r}")
    return dataclasses.replace(PRESETS[preset], **overrides)


ARMS = ("baseline", "proposed")
# The human benchmark, recorded beside the arms (it does not train): each rater against the
# consensus of the other raters on the test scans.
OPERATOR_ARM = "operator"
MIN_STREAK_SPEARMAN = 0.5
# The air-streak gate is measured on the scans that show air around the limb; with fewer
# than this many it is not declared (cropped real AIMs often have none), and the protocol
# says so.
MIN_AIR_SCANS = 10
MIN_TEST_GRADES = 4
# Arm validity, per unit on validation scans: the selected epoch's validation kappa must
# beat the trivial predictor's (0) by this margin ...
MIN_LEARNED_VAL_KAPPA = 0.2
# ... and the baseline's validation loss must have stopped falling at the epoch cap: its
# minimum over the last quarter of the budget at most this fraction below its minimum
# before (`hrpqct.pilot.late_fall`), on at least 3 of 4 units.
SETTLED_VAL_LOSS_FALL = 0.02
# The pilot that chose the powered epoch budget (hrpqct/pilot.py, validation data only).
PILOT_SEED = 100
# H2: the proposed network's kappa may fall below the operators' by at most this much.
NONINFERIORITY_MARGIN = 0.1


def unit_seeds(seed: int, units: int, ensemble_size: int) -> dict:
    """The seeds a run uses: ``test`` (the held-out split, drawn once), per unit ``split``
    (its training / validation split of the pool) and ``members`` (initialisation, batch
    order and augmentation of each ensemble member; the same for both arms).

    Example:
        unit_seeds(0, 2, 1) -> {"test": 7919, "split": [50000, 50001], "members": [[0], [1009]]}
    """
    seed = int(seed)
    return {"test": seed * 100_003 + 7919, "split": [seed * 100_003 + 50_000 + r for r in range(units)],
            "members": [[seed * 100_003 + r * 1_009 + k for k in range(ensemble_size)] for r in range(units)]}


def arm_differences(config) -> str:
    """What separates the arms beyond the architecture, declared in the protocol."""
    from hrpqct.models import build_grader

    shape = (config.model_size, config.model_size, 1)
    counts = {arm: build_grader(arm, shape, baseline_filters=config.baseline_filters,
                                proposed_filters=config.proposed_filters, dense_units=config.dense_units,
                                activation=config.activation).count_params() for arm in ARMS}
    return (f"arms differ beyond the architecture: parameters baseline {counts['baseline']:,}, proposed "
            f"{counts['proposed']:,}; dropout 0.3 before the output (proposed only); batch normalisation "
            f"(proposed only); both: the same optimiser, learning rate, epoch budget, selection on the "
            f"validation kappa, class weights, augmentation, batch size and data")


def simulator_settings(config: HrpqctConfig) -> str:
    """The simulator settings a run freezes in its protocol, as one line."""
    keys = ("image_size", "oversample", "stack_slices", "n_projections", "field_of_view_mm", "projection_noise",
            "fbp_window", "grade_counts", "rater_noise", "scans_per_site")
    return "simulator settings frozen before training: " + ", ".join(f"{k}={getattr(config, k)}" for k in keys)


def study_protocol(config: HrpqctConfig, seed: int = 0, *, simulated: bool = True, air_scans=None):
    """The study a run declares before training (see docs/studies.md).

    A fixed test cohort is split off once (its own seed, stratified by consensus grade) and
    never used to choose anything. Each unit r draws its own training / validation split of
    the remaining pool and its own member seeds; both arms train on that split with those
    seeds, so the arms are compared unit by unit (paired t-test). The operators' kappa on
    the test scans is recorded for every unit as the human benchmark of H2.

    Args:
        config: HrpqctConfig.
        seed: int, default 0. The run's seed (cohort, splits, member seeds).
        simulated: bool, default True. The cohort is simulated (or a simulated dataset
            with its ground truth): the simulator's settings are declared and the gates
            `consensus_calibration` (data) and `artefact_follows_motion` (oracle) of
            `hrpqct.gates` check them before any grader trains.
        air_scans: (int, int), optional. (scans showing air around the limb, scans); with
            fewer than `MIN_AIR_SCANS` showing air the gate `air_streak_spearman` is not
            declared and a deviation says why. Default: declared.
    """
    from hrpqct.gates import MAX_CALIBRATION_Z, MIN_ARTEFACT_MOTION_SPEARMAN
    from shared.study import Gate, Hypothesis, Protocol
    from shared.study.protocol import ArmCheck

    test = "paired_t"
    no_figure = "no figure: the thesis has no results chapter"
    hypotheses = (
        Hypothesis(id="H1", statement="The thesis' proposed network (batch norm, CBAM attention; "
                                      "here with residual blocks and dropout 0.3, which the thesis "
                                      "does not name) grades motion better than Walle et al.'s CNN: "
                                      "higher quadratic weighted kappa against the rater consensus",
                   endpoint="kappa", arms=("proposed", "baseline"), direction="greater", sesoi=POWERED_SESOI,
                   test=test, paper_value=no_figure, sides=PRIMARY_SIDES),
        Hypothesis(id="H2", statement=f"The proposed network grades as well as the operators, scored "
                                      f"like-for-like: against each leave-one-rater-out consensus (the "
                                      f"rounded mean of the other raters), its mean kappa is not below "
                                      f"the mean of each rater's kappa against the same reference by "
                                      f"more than {NONINFERIORITY_MARGIN:g} (endpoint: that mean kappa + "
                                      f"{NONINFERIORITY_MARGIN:g} for the network, the operators' mean "
                                      f"kappa for the benchmark; sesoi 0.001 makes 'contradicted' mean "
                                      f"the CI lies below -margin)",
                   endpoint="kappa_noninferiority", arms=("proposed", OPERATOR_ARM), direction="greater",
                   sesoi=0.001, test=test, family="noninferiority", paper_value=no_figure),
        Hypothesis(id="H3", statement="The proposed network grades more test scans exactly right "
                                      "(scan accuracy) than Walle et al.'s CNN",
                   endpoint="accuracy", arms=("proposed", "baseline"), direction="greater",
                   sesoi=0.05, test=test, family="secondary", paper_value=no_figure),
        Hypothesis(id="H4", statement="The proposed network flags more of the scans that need a "
                                      "rescan (grade >= 4: rescan sensitivity) than Walle et al.'s CNN",
                   endpoint="rescan_sensitivity", arms=("proposed", "baseline"), direction="greater",
                   sesoi=0.1, test=test, family="secondary", paper_value=no_figure),
    )
    air_gate = air_scans is None or air_scans[0] >= MIN_AIR_SCANS
    gates = ((Gate(name="air_streak_spearman", source="oracle", comparison=">=",
                   threshold=MIN_STREAK_SPEARMAN,
                   description="Spearman correlation of the air-streak RMS (the streaks in the air "
                               "around the limb that the scan holds, an image statistic that needs no "
                               "training) with the consensus grade, over the scans showing air: the "
                               "slices the graders read carry the grade"),) if air_gate else ()) + (
        Gate(name="test_grades_present", source="data", comparison=">=", threshold=MIN_TEST_GRADES,
             description="consensus grades (of 1-5) present among the test scans: on fewer, kappa "
                         "and accuracy measure the ordering of a few neighbouring grades only",
             hypotheses=("H1", "H2", "H3")),
        Gate(name="high_grade_test_scans", source="data", comparison=">=",
             threshold=int(config.min_high_grade_test_scans),
             description="test scans of consensus grade 4 or 5 (rescan): the rescan sensitivity "
                         "rests on them alone",
             hypotheses=("H4",)),
    )
    if simulated:
        gates += (
            Gate(name="consensus_calibration", source="data", comparison="<=", threshold=MAX_CALIBRATION_Z,
                 description=f"largest binomial z, over sites and grades, of the consensus grade shares "
                             f"against the target table ({config.grade_counts}): the simulated raters' "
                             f"grades have the frequencies the simulator promises"),
            Gate(name="artefact_follows_motion", source="oracle", comparison=">=",
                 threshold=MIN_ARTEFACT_MOTION_SPEARMAN,
                 description="Spearman correlation of the artefact measure the raters grade with the "
                             "simulated motion size (all scans): the grades measure motion"),
        )
    sites = config.sites
    deviations = [arm_differences(config)]
    if not air_gate:
        deviations.append(f"gate air_streak_spearman not declared: {air_scans[0]} of {air_scans[1]} scans show "
                          f"air around the limb (fewer than {MIN_AIR_SCANS}); the cropped scans leave no "
                          f"air to measure streaks in")
    deviations.append(
        f"training alike: both arms train {config.epochs} epochs (patience {config.patience} on the "
        f"validation kappa{'; no early stopping' if config.patience >= config.epochs else ''}) and keep the "
        f"epoch of the best scan-level validation kappa (the endpoint, on each unit's validation scans); "
        f"per-epoch curves and the selected epoch per unit are kept in training_curves.json and claims.json"
        + (f"; the powered budget was chosen on pilot data seed {PILOT_SEED} from validation losses only "
           f"(hrpqct/pilot.py)" if config.preset == "powered" else ""))
    deviations.append(
        f"declared secondary endpoint 'vote' (descriptive, no verdict): the networks of {config.vote_size} "
        f"consecutive units per arm grade the test scans as Walle's ensemble (slice votes, confidence rule "
        f"{config.confidence_threshold:g}); kappa, accuracy, rescan sensitivity, review share and slice ties "
        f"per vote, and the arms' paired differences (hrpqct/ensemble.py)")
    validity = (
        ArmCheck(name="learned_val_kappa", kind="learned", comparison=">=", threshold=MIN_LEARNED_VAL_KAPPA,
                 arms=ARMS, max_failed_share=0.1,
                 description=f"the selected epoch's scan-level validation kappa beats the trivial predictor's "
                             f"(0) by {MIN_LEARNED_VAL_KAPPA:g}: the arm learned"),)
    if config.epochs >= 8:
        validity += (ArmCheck(
            name="baseline_val_loss_settled", kind="stop_reachable", comparison="<=",
            threshold=SETTLED_VAL_LOSS_FALL, arms=("baseline",), max_failed_share=0.25,
            description=f"relative fall of the baseline's validation loss over the last quarter of the "
                        f"{config.epochs}-epoch budget (its minimum there against its minimum before): "
                        f"at most {SETTLED_VAL_LOSS_FALL:g}, i.e. the slower-learning arm had stopped "
                        f"improving at the cap"),)
    if simulated:
        deviations.append(simulator_settings(config))
    if config.model_size != config.image_size:
        deviations.append(f"graders' input {config.model_size} x {config.model_size} pixels of "
                          f"{config.field_of_view_mm / config.model_size:.3g} mm: each scan's field resampled "
                          f"from the {config.image_size}-pixel grid (hrpqct/scan_input.py)")
    if config.preset != "paper":
        deviations.append(f"preset {config.preset}: reduced grid, views, cohort, networks, ensemble and "
                          f"epochs (see hrpqct/config.py)")
    seeds = unit_seeds(seed, int(config.seeds), int(config.ensemble_size))
    return Protocol(
        paper="hrpqct", preset=config.preset, arms=ARMS + (OPERATOR_ARM,),
        pairing_unit="unit r: its own training / validation split of the non-test pool (seed "
                     "seed * 100003 + 50000 + r) and member seeds seed * 100003 + 1009 r + k "
                     "(initialisation, batch order, augmentation), the same for both arms; the test "
                     "cohort is fixed; the operator benchmark is one value on the test cohort",
        units=tuple(range(int(config.seeds))),
        test_set={"source": f"one held-out split stratified by consensus grade ({config.test_fraction:g} "
                            f"of each grade), drawn once from its own seed; the same test scans for both "
                            f"arms and every unit, never used to choose anything (early stopping reads "
                            f"each unit's validation scans)",
                  "seed": int(seeds["test"]), "fraction": float(config.test_fraction),
                  "cohort_scans": int(sum(sites.values())),
                  "cohort": f"simulated ({', '.join(f'{n} {s}' for s, n in sites.items())}) from the "
                            f"seed, unless the run reads --data"},
        hypotheses=hypotheses, gates=gates, deviations=tuple(deviations), validity=validity,
    )

"""Presets of the heatmap-loss experiments.

`paper` holds the thesis' settings (sections 3.2-3.3 and the released generator's
figures); `quick` is a CPU-sized run of the same protocol (about two minutes on two
cores): images downscaled 2x to 52 x 67, a VGG16 of 1/8-1/16 width, 512/192/384
images, 6 models per group, the maps taken at `block4_conv3` (a 6 x 8 grid, the
grid `block5_conv3` has at the thesis' full 105 x 135 size; `block5_conv3` would be
3 x 4 here), He-normal initialisation (from Keras' Glorot-uniform default the
plain ReLU stack often sits at 25 % accuracy for several epochs or dies under the
penalty) and learning-rate ranges suited to random initialisation (the thesis'
ranges were for fine-tuning ImageNet weights). `powered` is `quick` with 22 models per
group (sized by `powered_models_per_group`) and 1,000 test images. `tiny` takes seconds
and serves the tests and the notebook in CI.
"""

import dataclasses


@dataclasses.dataclass(frozen=True)
class HeatmapLossConfig:
    """Every setting of one run of experiment 1 or 2.

    Attributes:
        preset: str. Name of the preset.
        image_size: (height, width). Model grid; the generator draws 105 x 135
            images, which are downscaled (area averaging) when smaller.
        filters: tuple of 5 ints. VGG16 widths (paper: 64, 128, 256, 512, 512).
        dense_units: int. Hidden fully connected layer (thesis: 100).
        backbone_weights: None, "imagenet" or a weights-file path.
        kernel_initializer: str. Kernel initializer when training from scratch
            (Keras' VGG16: "glorot_uniform").
        preprocessing: None, "unit" or "vgg16". Input preprocessing of the
            classifier (`build_classifier`); None: VGG16's own with ImageNet
            weights, intensities / 255 otherwise.
        n_train, n_val, n_test: ints. Synthetic images per split (thesis: 10,000,
            3,000 and a 10,000-image test set).
        models_per_group: int. Trials of the Bayesian search per group (thesis: ~30).
        lr_cce, lr_heatmap: (low, high). Log-uniform learning-rate ranges searched
            (thesis: CCE 5e-6..1e-3, heatmap 5e-7..5e-5).
        heatmap_weight: float. Weight of the attribution penalty.
        heatmap_classification_loss: "mse" (thesis) or "cce".
        method: "hirescam" (thesis) or "gradcam".
        cam_layer: str. Layer of the attribution maps.
        epochs: int. Maximum epochs per model (early stopping ends most sooner).
        patience: int. Early-stopping patience on the validation loss.
        batch_size: int.
        val_accuracy_threshold: float. Models kept for the comparison need a
            validation accuracy above this (thesis: 0.95).
        objective: str. Tuner objective (thesis: the validation loss).
        overlay_per_class: int. Images per class in the overlay figures.
        occlusion_blur_sigma: float. Gaussian sigma, in pixels of the model grid, of
            the blur that replaces the heart, its complement or the marker in H4 / H5
            and of the deletion / insertion curves (`heatmap_loss.dependence`): 5 px at
            the thesis' 105 x 135 grid (RISE's blur), scaled with the grid.
        deletion_steps: int. Points of the deletion and insertion curves, less one.
        curve_images_per_class: int. The deletion and insertion curves are drawn for
            the first this many test images of each class (a curve costs
            `deletion_steps + 1` forward passes; they are reported, not claimed).
    """

    preset: str
    image_size: tuple = (105, 135)
    filters: tuple = (64, 128, 256, 512, 512)
    dense_units: int = 100
    backbone_weights: object = None
    kernel_initializer: str = "glorot_uniform"
    preprocessing: object = None
    n_train: int = 10_000
    n_val: int = 3_000
    n_test: int = 10_000
    models_per_group: int = 30
    lr_cce: tuple = (5e-6, 1e-3)
    lr_heatmap: tuple = (5e-7, 5e-5)
    heatmap_weight: float = 1.0
    heatmap_classification_loss: str = "mse"
    method: str = "hirescam"
    cam_layer: str = "block5_conv3"
    epochs: int = 50
    patience: int = 5
    batch_size: int = 32
    val_accuracy_threshold: float = 0.95
    objective: str = "val_loss"
    overlay_per_class: int = 4
    occlusion_blur_sigma: float = 5.0
    deletion_steps: int = 16
    curve_images_per_class: int = 32


PRESETS = {
    # ImageNet weights (the thesis' start) need a download: `--weights imagenet`.
    # Without them the backbone starts from He-normal weights (see `quick`).
    "paper": HeatmapLossConfig(preset="paper", kernel_initializer="he_normal"),
    "quick": HeatmapLossConfig(
        preset="quick", image_size=(52, 67), filters=(8, 16, 32, 32, 32), dense_units=32,
        kernel_initializer="he_normal",
        n_train=512, n_val=192, n_test=384, models_per_group=6,
        lr_cce=(5e-4, 2e-3), lr_heatmap=(5e-4, 1.5e-3), heatmap_weight=1.0,
        cam_layer="block4_conv3", epochs=6, patience=2, batch_size=16,
        val_accuracy_threshold=0.95, occlusion_blur_sigma=2.5,
    ),
    # The quick models, enough trials per group for H1-H3 (`powered_models_per_group`),
    # and a larger test set.
    "powered": HeatmapLossConfig(
        preset="powered", image_size=(52, 67), filters=(8, 16, 32, 32, 32), dense_units=32,
        kernel_initializer="he_normal",
        n_train=512, n_val=192, n_test=1000, models_per_group=22,
        lr_cce=(5e-4, 2e-3), lr_heatmap=(5e-4, 1.5e-3), heatmap_weight=1.0,
        cam_layer="block4_conv3", epochs=6, patience=2, batch_size=16,
        val_accuracy_threshold=0.95, occlusion_blur_sigma=2.5,
    ),
    "tiny": HeatmapLossConfig(
        preset="tiny", image_size=(32, 40), filters=(2, 4, 4, 8, 8), dense_units=8,
        kernel_initializer="he_normal", cam_layer="block4_conv3",
        n_train=48, n_val=16, n_test=16, models_per_group=2,
        lr_cce=(1e-3, 3e-3), lr_heatmap=(1e-3, 3e-3), epochs=1, patience=1, batch_size=16,
        val_accuracy_threshold=0.0, overlay_per_class=2, occlusion_blur_sigma=1.5,
    ),
}


# Pilot figures the powered preset is sized from: the CCE (baseline) group of the quick
# run of experiment 1 at seed 0 (five models): SD of the heart overlap 0.0397 and of
# the test accuracy 0.0021, the latter floored by the binomial SD of an accuracy of
# 0.95 on 1000 test images (0.0069). Paired differences are taken as independent
# (SD x sqrt 2); 70 % of the trials are expected to keep both groups' models.
POWERED_PILOT = {"heart_overlap_sd_diff": 0.0562, "test_accuracy_sd_diff": 0.0097,
                 "kept_pair_share": 0.7, "alpha": 0.05 / 3}
# Sides of H1's test, which the powered trials are sized for, and of the other directional
# claim H3 (`study_protocol`): one-sided, so the test run is the test sized. H2 (TOST) is
# two one-sided tests by construction and is sized as one.
PRIMARY_SIDES = 1


# H4 / H5 (does the evidence move with the map?), declared before any run. The endpoint
# is a mean drop of a probability, on a scale of 0 to 1. 0.05, a twentieth of that scale,
# is the smallest difference worth a claim: it is one test image in twenty losing all its
# confidence, or every image losing a twentieth of it; below that a change moves no
# decision of a confident model. It is also H1's SESOI, a twentieth of the overlap's
# scale, so "the map moved" and "the evidence moved" are claimed at the same resolution
# of their own scales. No pilot sized the trials for them: the powered trials are H1 /
# H2's, and the claims report their MDE.
DEPENDENCE_SESOI = 0.05
# H4 / H5 are their own Holm family: adding them to H1-H3's would change the tests the
# powered trials were sized and declared for (Holm over three claims).
DEPENDENCE_FAMILY = "dependence"


def dependence_hypotheses(config: HeatmapLossConfig) -> list:
    """H4 and H5: the heatmap models depend on the heart more than the cce models do.

    Endpoints (`heatmap_loss.dependence`), per model the mean over the test images of
    the drop in the true-class probability when a region is replaced by a Gaussian blur
    of the image (sigma `config.occlusion_blur_sigma` pixels): `complement_drop`
    (everything outside the heart replaced; H4: smaller for the heatmap models) and
    `heart_drop` (the heart replaced; H5: larger). Paired by trial, one-sided Wilcoxon,
    SESOI `DEPENDENCE_SESOI`, Holm within their own family.
    """
    from shared.study import Hypothesis

    blur = f"a Gaussian blur of the image (sigma {config.occlusion_blur_sigma:g} px)"
    return [
        Hypothesis(id="H4", statement="Beyond the thesis: the heatmap models' decisions rest "
                                      "on the heart more; the drop in true-class probability "
                                      "when everything outside the heart is replaced by "
                                      f"{blur} is smaller than for the cce models (mean over "
                                      "the test images per model)",
                   endpoint="complement_drop", arms=("heatmap", "cce"), direction="less",
                   sesoi=DEPENDENCE_SESOI, test="wilcoxon", sides=PRIMARY_SIDES,
                   family=DEPENDENCE_FAMILY),
        Hypothesis(id="H5", statement="Beyond the thesis: the drop in true-class probability "
                                      f"when the heart is replaced by {blur} is larger for "
                                      "the heatmap models than for the cce models (mean over "
                                      "the test images per model)",
                   endpoint="heart_drop", arms=("heatmap", "cce"), direction="greater",
                   sesoi=DEPENDENCE_SESOI, test="wilcoxon", sides=PRIMARY_SIDES,
                   family=DEPENDENCE_FAMILY),
    ]


def powered_models_per_group(pilot=None) -> int:
    """Trials per group for 80 % power on H1 (Wilcoxon) and H2 (TOST), Holm-safe.

    `shared.stats.units_for_mde` at alpha / 3 (Holm's smallest level over H1-H3)
    gives the pairs needed for H1's smallest effect (0.05) and H2's margin (0.02);
    dividing by the share of trials expected to keep both models gives the trials.
    """
    import math

    from shared.stats import units_for_mde

    pilot = dict(POWERED_PILOT if pilot is None else pilot)
    h1 = units_for_mde(0.05, pilot["heart_overlap_sd_diff"], alpha=pilot["alpha"],
                       alternative="greater" if PRIMARY_SIDES == 1 else "two-sided", test="wilcoxon")
    h2 = units_for_mde(0.02, pilot["test_accuracy_sd_diff"], alpha=pilot["alpha"],
                       alternative="greater", test="paired_t")
    return int(math.ceil(max(h1, h2) / pilot["kept_pair_share"]))


def get_config(preset: str, **overrides) -> HeatmapLossConfig:
    """The named preset with `overrides` applied (any field of HeatmapLossConfig)."""
    if preset not in PRESETS:
        raise ValueError(f"preset must be one of {sorted(PRESETS)}. Received: preset={preset!r}")
    return dataclasses.replace(PRESETS[preset], **overrides)


def study_protocol(config: HeatmapLossConfig, experiment, seed: int = 0, *, test_set=None,
                   has_marker=None, dependence=None):
    """The study a run declares before training (see docs/studies.md).

    Trial k of both groups starts from the initial weights of the same `init_seed`
    (the loaded backbone and the same drawn head with pretrained weights), trains on
    the same data in the same batch order; each group's Bayesian search picks its
    own learning rate. So trial k is the pairing unit and the groups are compared by
    paired tests over the trials whose models both pass the validation filter.

    Args:
        config: HeatmapLossConfig.
        experiment: 1, 2 or "acdc".
        seed: int. The run's seed.
        test_set: dict, optional. How the test set was made (default: the synthetic
            test set of seed + 2).
        has_marker: bool, optional. Whether H3 (marker overlap) is tested; default
            experiment 2.
        dependence: bool, optional. Whether H4 / H5 (occlusion of the heart and of its
            complement, `dependence_hypotheses`) are tested; default the synthetic
            experiments 1 and 2.
    """
    from shared.study import Gate, Hypothesis, Protocol

    if has_marker is None:
        has_marker = experiment == 2
    if test_set is None:
        test_set = {"source": f"synthetic experiment-{experiment} images generated once",
                    "seed": int(seed) + 2, "images": int(config.n_test)}
    hypotheses = [
        Hypothesis(id="H1", statement="Models trained with the heatmap loss put more of their "
                                      "HiResCAM mass inside the heart (thesis 3.4, p < 0.05)",
                   endpoint="heart_overlap", arms=("heatmap", "cce"), direction="greater",
                   sesoi=0.05, test="wilcoxon", sides=PRIMARY_SIDES),
        Hypothesis(id="H2", statement="The heatmap loss keeps the classification accuracy "
                                      "of cross-entropy alone (thesis 3.4)",
                   endpoint="test_accuracy", arms=("heatmap", "cce"), direction="equivalent",
                   sesoi=0.02, test="paired_t"),
    ]
    if has_marker:
        hypotheses.append(
            Hypothesis(id="H3", statement="With the heatmap loss the maps of male images "
                                          "overlap the sex marker less (thesis 3.5); mean over "
                                          "the male images, the only ones with a marker",
                       endpoint="marker_overlap", arms=("heatmap", "cce"), direction="less",
                       sesoi=0.001, test="wilcoxon", sides=PRIMARY_SIDES))
    if dependence is None:
        dependence = experiment in (1, 2)
    if dependence:
        hypotheses += dependence_hypotheses(config)
    return Protocol(
        paper="heatmap_loss", preset=config.preset, arms=("cce", "heatmap"),
        pairing_unit=("trial index k: initial weights (init_seed of the run seed and k), "
                      "training data and batch order; the learning rate is each group's own "
                      "search's choice. A trial enters the comparison when both groups' "
                      f"models pass validation accuracy > {config.val_accuracy_threshold}"),
        units=tuple(range(config.models_per_group)),
        test_set=dict(test_set),
        hypotheses=tuple(hypotheses),
        gates=(Gate(name="heart_area", source="data", comparison="<=", threshold=0.5,
                    description="share of the image inside the heart (a uniform map's overlap): "
                                "above one half, overlap cannot show where a model looks",
                    hypotheses=("H1",)),),
        deviations=(
            "experiment-level protocol added by this suite; the thesis tests the kept "
            "models as independent groups with Shapiro-Wilk then Mann-Whitney or a t-test",
            "paired by trial index (shared initial weights and batch order); models below the "
            "validation filter or not trained (non-finite loss, or validation accuracy not "
            "above the majority-class rate) are counted per group, not compared",
        ),
        design="acdc" if experiment == "acdc" else f"exp{experiment}",
    )


def experiment_name(experiment) -> str:
    """Store name of a study: `heatmap_loss_exp1`, `heatmap_loss_exp2`, `heatmap_loss_acdc`."""
    return f"heatmap_loss_exp{experiment}" if experiment in (1, 2) else f"heatmap_loss_{experiment}"

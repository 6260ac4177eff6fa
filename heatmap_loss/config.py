"""Presets of the heatmap-loss experiments.

`paper` holds the thesis' settings (sections 3.2-3.3 and the released generator's
figures); `quick` is a CPU-sized run of the same protocol (about two minutes on two
cores): images downscaled 2x to 52 x 67, a VGG16 of 1/8-1/16 width, 512/192/384
images, 5 models per group, the maps taken at `block4_conv3` (a 6 x 8 grid, the
grid `block5_conv3` has at the thesis' full 105 x 135 size; `block5_conv3` would be
3 x 4 here), He-normal initialisation (from Keras' Glorot-uniform default the
plain ReLU stack often sits at 25 % accuracy for several epochs or dies under the
penalty) and learning-rate ranges suited to random initialisation (the thesis'
ranges were for fine-tuning ImageNet weights). `tiny` takes seconds and serves the tests and
the notebook in CI.
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
    """

    preset: str
    image_size: tuple = (105, 135)
    filters: tuple = (64, 128, 256, 512, 512)
    dense_units: int = 100
    backbone_weights: object = None
    kernel_initializer: str = "glorot_uniform"
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


PRESETS = {
    # ImageNet weights (the thesis' start) need a download: `--weights imagenet`.
    # Without them the backbone starts from He-normal weights (see `quick`).
    "paper": HeatmapLossConfig(preset="paper", kernel_initializer="he_normal"),
    "quick": HeatmapLossConfig(
        preset="quick", image_size=(52, 67), filters=(8, 16, 32, 32, 32), dense_units=32,
        kernel_initializer="he_normal",
        n_train=512, n_val=192, n_test=384, models_per_group=5,
        lr_cce=(5e-4, 2e-3), lr_heatmap=(5e-4, 1.5e-3), heatmap_weight=1.0,
        cam_layer="block4_conv3", epochs=6, patience=2, batch_size=16,
        val_accuracy_threshold=0.95,
    ),
    "tiny": HeatmapLossConfig(
        preset="tiny", image_size=(32, 40), filters=(2, 4, 4, 8, 8), dense_units=8,
        kernel_initializer="he_normal", cam_layer="block4_conv3",
        n_train=48, n_val=16, n_test=16, models_per_group=2,
        lr_cce=(1e-3, 3e-3), lr_heatmap=(1e-3, 3e-3), epochs=1, patience=1, batch_size=16,
        val_accuracy_threshold=0.0, overlay_per_class=2,
    ),
}


def get_config(preset: str, **overrides) -> HeatmapLossConfig:
    """The named preset with `overrides` applied (any field of HeatmapLossConfig)."""
    if preset not in PRESETS:
        raise ValueError(f"preset must be one of {sorted(PRESETS)}. Received: preset={preset!r}")
    return dataclasses.replace(PRESETS[preset], **overrides)


def study_protocol(config: HeatmapLossConfig, experiment: int, seed: int = 0):
    """The study a run declares before training (see docs/studies.md).

    The two groups share nothing but the data: each model is a trial of its group's
    own Bayesian search, so the groups are compared as independent samples of the
    models kept (validation accuracy above the threshold); a unit is a model's index
    within its group.
    """
    from shared.study import Gate, Hypothesis, Protocol

    hypotheses = [
        Hypothesis(id="H1", statement="Models trained with the heatmap loss put more of their "
                                      "HiResCAM mass inside the heart (thesis 3.4, p < 0.05)",
                   endpoint="heart_overlap", arms=("heatmap", "cce"), direction="greater",
                   sesoi=0.05, test="mannwhitney"),
        Hypothesis(id="H2", statement="The heatmap loss keeps the classification accuracy "
                                      "of cross-entropy alone (thesis 3.4)",
                   endpoint="test_accuracy", arms=("heatmap", "cce"), direction="equivalent",
                   sesoi=0.02, test="welch"),
    ]
    if experiment == 2:
        hypotheses.append(
            Hypothesis(id="H3", statement="With the heatmap loss the maps of male images "
                                          "overlap the sex marker less (thesis 3.5)",
                       endpoint="marker_overlap", arms=("heatmap", "cce"), direction="less",
                       sesoi=0.001, test="mannwhitney"))
    return Protocol(
        paper="heatmap_loss", preset=config.preset, arms=("cce", "heatmap"),
        pairing_unit="none: independent groups; a unit is a kept model's index in its group",
        units=tuple(range(config.models_per_group)),
        test_set={"source": f"synthetic experiment-{experiment} images generated once",
                  "seed": int(seed) + 2, "images": int(config.n_test)},
        hypotheses=tuple(hypotheses),
        gates=(Gate(name="heart_area", source="data", comparison="<=", threshold=0.5,
                    description="share of the image inside the heart (a uniform map's overlap): "
                                "above one half, overlap cannot show where a model looks",
                    hypotheses=("H1",)),),
        deviations=("experiment-level protocol added by this suite; the thesis tests the kept "
                    "models with Shapiro-Wilk then Mann-Whitney or a t-test",),
    )

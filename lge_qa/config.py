"""Presets: `paper` (the paper's settings), `quick` (minutes on a CPU), `tiny` (seconds).

Sultan et al., Sections 4.1-4.3: 900 masks-only scans for the LA detector (U-Net,
Adam 1e-3, batch 128), 196 scored scans (test 20, the rest 90:10 train / validation),
128 x 128 slices; QA training 40 epochs, Adam 1e-3, cosine annealing, early stopping
patience 7, batch 128, flip / perspective / shift-scale-rotate with p = 0.5 each;
SupCon pre-training 100 epochs, batch 512, LARS with learning rate 0.5; five
repetitions (Table 2).
"""

import dataclasses

STRATEGIES = ("baseline", "multitask", "contrastive")
# Table 2: scores of the fibrosis-quality label per scan, diagnostic = positive.
METRICS = ("precision", "recall", "f1", "specificity")


@dataclasses.dataclass
class LgeQaConfig:
    """Every setting of the reproduction; library functions take these explicitly."""

    # Data (phantom; the loader reads any slice count and size).
    n_segmentation: int = 900
    n_scored: int = 196
    volume_shape: tuple = (144, 144, 44)
    image_size: int = 128
    rater_sd: float = 0.5
    quality_correlation: float = 0.6
    quality_spread: float = 0.7
    quality_shift: float = 0.1
    score_threshold: int = 3
    # Stage 1: LA detector.
    unet_filters: tuple = (64, 128, 256, 512)
    unet_epochs: int = 40
    unet_batch_size: int = 128
    unet_learning_rate: float = 1e-3
    unet_max_slices: int = 0  # 0: all slices of the masks-only cohort
    detection_threshold: float = 0.5
    # Stage 2: QA networks.
    encoder_filters: tuple = (64, 128, 256, 512)
    encoder_blocks: tuple = (3, 4, 6, 3)
    encoder_weights: str = None
    latent_dim: int = 128
    dropout: float = 0.2
    bn_momentum: float = 0.99  # BatchNormalization moving-average momentum (Keras default)
    epochs: int = 40
    batch_size: int = 128
    learning_rate: float = 1e-3
    patience: int = 7
    restore_best: bool = True  # early stopping restores the lowest-validation-MSE epoch
    recalibrate_bn: bool = True  # batch-norm statistics from the un-augmented training slices
    test_scans: int = 20
    val_fraction: float = 0.1
    augment_p: float = 0.5
    # QA & contrastive pre-training.
    pretrain_epochs: int = 100
    pretrain_batch_size: int = 512
    lars_learning_rate: float = 0.5
    lars_momentum: float = 0.9
    lars_weight_decay: float = 1e-6
    lars_eta: float = 0.001
    temperature: float = 0.1
    projection_dim: int = 128
    # Protocol.
    repetitions: int = 5
    strategies: tuple = STRATEGIES
    cam_scans: int = 2
    projection: str = "umap"  # Fig. 3: "umap" (PCA when umap-learn is missing) or "pca"
    seed: int = 0

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def paper() -> LgeQaConfig:
    """The paper's settings (phantom volumes kept at 144 x 144 x 44 to fit on disk)."""
    return LgeQaConfig()


def quick() -> LgeQaConfig:
    """A few minutes on a 2-core CPU: small volumes, 48 px slices, a narrow three-stage
    ResNet (total stride 16, which 48 px needs), short schedules. Batch-norm momentum
    0.9: a few hundred updates are too few for Keras' 0.99. Early stopping keeps the
    paper's patience 7.
    """
    return LgeQaConfig(
        n_segmentation=24,
        n_scored=80,
        volume_shape=(64, 64, 12),
        image_size=48,
        unet_filters=(8, 16, 32),
        unet_epochs=12,
        unet_batch_size=8,
        unet_learning_rate=2e-3,
        encoder_filters=(8, 16, 32),
        encoder_blocks=(1, 1, 1),
        latent_dim=32,
        bn_momentum=0.9,
        epochs=20,
        batch_size=16,
        patience=7,
        pretrain_epochs=12,
        pretrain_batch_size=64,
        lars_eta=0.01,
        projection_dim=32,
        repetitions=3,
    )


def tiny() -> LgeQaConfig:
    """Seconds: tests and the notebook in CI."""
    return LgeQaConfig(
        n_segmentation=4,
        n_scored=28,
        volume_shape=(32, 32, 6),
        image_size=32,
        unet_filters=(4, 8),
        unet_epochs=1,
        unet_batch_size=32,
        detection_threshold=0.3,
        encoder_filters=(4, 8),
        encoder_blocks=(1, 1),
        latent_dim=8,
        bn_momentum=0.9,
        epochs=1,
        batch_size=64,
        patience=1,
        test_scans=8,
        pretrain_epochs=1,
        pretrain_batch_size=64,
        projection_dim=8,
        repetitions=2,
        cam_scans=1,
        projection="pca",
    )


PRESETS = {"paper": paper, "quick": quick, "tiny": tiny}


def get_config(preset: str, **overrides) -> LgeQaConfig:
    """The named preset with field overrides."""
    if preset not in PRESETS:
        raise ValueError(f"preset must be one of {sorted(PRESETS)}. Received: preset={preset!r}")
    cfg = PRESETS[preset]()
    for key, value in overrides.items():
        if not hasattr(cfg, key):
            raise ValueError(f"LgeQaConfig has no field {key!r}")
        setattr(cfg, key, value)
    return cfg

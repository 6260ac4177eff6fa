"""Build and data functions for the one-vs-two-replica checks of SiamesePretrainer."""

import keras
import numpy as np

GRID = 8


def _pretrainer(contrastive_loss, label_mode):
    from bar_ad.models import SiamesePretrainer, build_decoder, build_encoder

    enc = build_encoder(GRID, patch_size=4, width=8, depth=1, num_heads=2, mlp_dim=16)
    dec = build_decoder(GRID, patch_size=4, width=8, hidden_channels=2)
    model = SiamesePretrainer(enc, dec, contrastive_loss, label_mode=label_mode)
    model.compile(optimizer=keras.optimizers.SGD(0.01))
    return model


def build_soft(precision):
    """BAR pre-training: continuous InfoNCE on soft labels (Eq. 4) + L1 recon (Eq. 5)."""
    from shared.losses import ContinuousInfoNCE

    # A small sigma makes the kernel weights depend strongly on the labels, so that a
    # loss computed on each replica's half batch alone would differ from the global one.
    return _pretrainer(ContinuousInfoNCE(sigma=0.2, temperature=0.1, mode="cross_view"),
                       "soft")


def build_instance(precision):
    """Self-supervised InfoNCE (one class per sample, ids offset per replica) + recon."""
    from shared.losses import SupConLoss

    return _pretrainer(SupConLoss(temperature=0.1, base_temperature=0.1), "instance")


def data():
    rng = np.random.default_rng(0)
    shape = (8, GRID, GRID, GRID, 1)
    x = {k: rng.random(shape).astype("float32") for k in ("view1", "view2", "anchor")}
    return x, np.array([0.0, 1.0, 0.3, 0.9, 1.0, 0.0, 0.55, 0.1], "float32")

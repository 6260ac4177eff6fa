"""Losses shared by several papers: supervised contrastive, continuous InfoNCE, Dice."""

from shared.losses.dice import DiceLoss, dice_coefficient
from shared.losses.infonce import (ContinuousInfoNCE, attainable_minimum, continuous_infonce,
                                   instance_infonce, kernel_targets, rbf_kernel)
from shared.losses.supcon import SupConLoss, supervised_contrastive_loss

__all__ = [
    "ContinuousInfoNCE",
    "DiceLoss",
    "SupConLoss",
    "continuous_infonce",
    "attainable_minimum",
    "kernel_targets",
    "instance_infonce",
    "dice_coefficient",
    "rbf_kernel",
    "supervised_contrastive_loss",
]

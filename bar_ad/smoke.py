"""`--smoke`: a preset proved on this machine in minutes.

Full-size data for a few subjects (the preset's grid and voxel size, written in the
ADNI layout and read back through the loader, alignment checks included), every Table 1
framework's full-size 3D ViT, two training steps of each (pre-training and fine-tuning:
one batch per epoch, two epochs), then the evaluation, figures and report of a
normal run.
"""

import dataclasses

from bar_ad.config import BarConfig


def smoke_config(config: BarConfig) -> BarConfig:
    """`config` cut to eight subjects of one scan, one fold and two epochs; sizes kept.

    Two folds of four subjects: the first fold's training part (four subjects, less
    its validation share) fits in one batch of the preset's pre-training and
    fine-tuning batch sizes, so each of the two epochs is one step.
    """
    return dataclasses.replace(
        config, n_ad=4, n_cn=4, scans_per_subject=(1, 1), design="cv", n_folds=2, folds_run=1,
        pretrain_epochs=2, finetune_epochs=2)

"""Brain-Aware Replacements (BAR) + continuous supervised contrastive pre-training.

Seyfioglu et al., "Brain-Aware Replacements for Supervised Contrastive Learning in
Detection of Alzheimer's Disease", MICCAI 2022. Modules: `atlas` (AAL + template),
`data` (ADNI layout), `phantom` (synthetic cohort), `mixing` (BAR, BAM, CutMix, views),
`models` (siamese pre-trainer, classifier), `training` (pre-training, fine-tuning,
evaluation), `report` (figures, Table 1, report.md), `experiment` (Table 1), `cli`.
"""

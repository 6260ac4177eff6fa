"""Two-stage quality assessment of left-atrial LGE-MRI (Sultan et al.).

Modules: `config` (presets), `io` (challenge layout reader / writer, scores table),
`phantom` (synthetic 3D LGE cohort), `models` (LA detector, QA networks, SupCon
pre-trainer), `training` (training and evaluating the networks), `report` (figures,
Table 2, report.md), `experiment` (the end-to-end reproduction), `cli` (`medrepro lge-qa`).
"""

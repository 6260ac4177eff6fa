"""Motion-artefact grading of HR-pQCT scans (Strunck's thesis; Walle et al. 2023; Sode et al. 2011).

Modules: `aim` (Scanco AIM reader/writer), `phantom` (radius/tibia cross-sections),
`tomography` (parallel-beam projection with rigid motion, filtered back-projection),
`motion` (motion trajectories, grades and simulated raters), `data` (dataset
generator and loader), `qme` (quantitative motion estimates), `models` (graders),
`grading` (ensemble scan grading, threshold graders), `training` (training and scoring
the graders), `report` (figures, report.md), `config` (presets), `experiment`
(end-to-end reproduction), `cli` (`medrepro hrpqct run | generate | info`).
"""

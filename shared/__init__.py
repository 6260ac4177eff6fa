"""Building blocks shared by two or more of the medrepro paper packages.

Data pipelines and augmentations, differentiable attribution, losses, backbones,
metrics, the results store, tuning, statistics and reports.
"""

__version__ = "0.1.0"

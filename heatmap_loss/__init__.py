"""Heatmap loss: feature attribution inside the loss function (Callanan, 2022).

A classifier is trained with its classification loss plus a weighted penalty on the
share of its HiResCAM (or Grad-CAM) map of the true class that falls outside the
heart, on synthetic cardiac MRI cross-sections (and, for real data, ACDC).
"""

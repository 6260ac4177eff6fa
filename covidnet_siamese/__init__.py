"""Siamesifying the COVID-Net: siamese and single COVID-Net-like classifiers of chest X-rays."""

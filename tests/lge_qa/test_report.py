import importlib.util

import numpy as np
import pytest

from lge_qa import report

pytestmark = pytest.mark.no_keras


def test_pca_projection_matches_scikit_learn_up_to_sign():
    from sklearn.decomposition import PCA

    x = np.random.default_rng(0).normal(size=(30, 6)) * np.arange(1, 7)
    ours, name = report.project_2d(x, seed=0, method="pca")
    ref = PCA(n_components=2).fit_transform(x)
    assert name == "PCA"
    for k in range(2):
        sign = np.sign(ours[:, k] @ ref[:, k])
        np.testing.assert_allclose(sign * ours[:, k], ref[:, k], atol=1e-8)


def test_umap_when_installed_pca_otherwise():
    x = np.random.default_rng(1).normal(size=(40, 5))
    coords, name = report.project_2d(x, seed=0, method="umap")
    assert coords.shape == (40, 2)
    assert name == ("UMAP" if importlib.util.find_spec("umap") else "PCA")


def test_umap_projection_is_reseeded():
    pytest.importorskip("umap")
    x = np.random.default_rng(2).normal(size=(40, 5))
    a, _ = report.project_2d(x, seed=3, method="umap")
    b, _ = report.project_2d(x, seed=3, method="umap")
    np.testing.assert_allclose(a, b)

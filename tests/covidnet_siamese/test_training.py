"""Pair balance, per-epoch balancing, three-way validation and templates on hand-made embeddings."""

import keras
import numpy as np
import pytest

from covidnet_siamese.models import build_siamese_net
from covidnet_siamese.training import (KeepBest, balanced_image_dataset, balanced_pair_dataset, class_templates, make_pairs,
                                       template_similarities, three_way_accuracy, three_way_trials)


def test_pairs_are_half_same_half_different():
    labels = np.repeat([0, 1, 2], [40, 30, 5])
    first, second, same = make_pairs(labels, 101, rng=0)
    assert same.sum() == 51 and len(same) == 101
    np.testing.assert_array_equal(labels[first] == labels[second], same.astype(bool))
    assert np.all(first != second)
    subset = np.array([0, 1, 40, 41, 70, 71])
    f, s, _ = make_pairs(labels, 20, rng=1, indices=subset)
    assert set(f) | set(s) <= set(subset)
    with pytest.raises(ValueError, match="two classes"):
        make_pairs(np.zeros(5, int), 4, rng=0)


def test_every_epoch_is_class_balanced():
    labels = np.repeat([0, 1, 2], [40, 30, 5])
    x = np.arange(len(labels), dtype=np.float32)[:, None]
    data, steps = balanced_image_dataset(x, labels, batch_size=4, seed=0)
    assert steps == 4  # 15 images: 4 + 4 + 4 + 3, batches never cross an epoch
    batches = iter(data)
    epochs = []
    for _ in range(2):
        epoch = [next(batches) for _ in range(steps)]
        assert [len(b[1]) for b in epoch] == [4, 4, 4, 3]
        seen = np.concatenate([b[1].numpy() for b in epoch])
        assert np.bincount(seen).tolist() == [5, 5, 5]
        images = np.concatenate([b[0].numpy()[:, 0] for b in epoch])
        np.testing.assert_array_equal(labels[images.astype(int)], seen)
        assert sorted(images[seen == 2].astype(int).tolist()) == list(range(70, 75))  # all COVID-19 images
        epochs.append(images)
    assert not np.array_equal(epochs[0], epochs[1])  # redrawn every epoch
    pairs, steps = balanced_pair_dataset(x, labels, n_pairs=12, batch_size=5, seed=0)
    (a, b), y = next(iter(pairs))
    assert steps == 3 and a.shape == (5, 1) and y.shape == (5,)
    np.testing.assert_array_equal(labels[a.numpy()[:, 0].astype(int)] == labels[b.numpy()[:, 0].astype(int)],
                                  y.numpy().astype(bool))


def test_three_way_trials():
    labels = np.repeat([0, 1, 2], [10, 10, 3])
    queries, refs, classes = three_way_trials(labels, 129, rng=0)
    assert refs.shape == (129, 3) and np.bincount(classes).tolist() == [43, 43, 43]
    np.testing.assert_array_equal(labels[queries], classes)
    np.testing.assert_array_equal(labels[refs], np.tile([0, 1, 2], (129, 1)))
    assert np.all(refs[np.arange(129), classes] != queries)
    with pytest.raises(ValueError, match="at least 2 images"):
        three_way_trials(np.array([0, 0, 1, 1, 2]), 3, rng=0)


def _neg_l1(a, b):
    return -np.abs(np.asarray(a) - np.asarray(b)).sum(axis=1)


def test_three_way_accuracy_on_hand_made_embeddings():
    # Images 0-2 class 0, 3-5 class 1, 6-8 class 2; image 8 sits on class 0's point.
    emb = np.array([[0.0], [0.1], [0.2], [5.0], [5.1], [5.2], [10.0], [10.1], [0.05]])
    # Trials: (query, refs): image 1 -> correct; image 4 -> correct; image 8 -> wrong (closest to class 0).
    trials = (np.array([1, 4, 8]), np.array([[0, 3, 6], [2, 5, 7], [0, 3, 6]]), np.array([0, 1, 2]))
    assert three_way_accuracy(_neg_l1, emb, trials) == pytest.approx(2 / 3)


def test_templates_and_prediction_by_similarity():
    emb = np.array([[0.0, 2.0], [2.0, 2.0], [4.0, 0.0], [6.0, 0.0], [9.0, 9.0]])
    labels = np.array([0, 0, 1, 1, 2])
    templates = class_templates(emb, labels)
    np.testing.assert_allclose(templates, [[1.0, 2.0], [5.0, 0.0], [9.0, 9.0]])
    with pytest.raises(ValueError, match="COVID-19"):
        class_templates(emb[:4], labels[:4])
    # A siamese head whose similarity falls with the (equally weighted) L1 distance.
    model = build_siamese_net((16, 16, 1), nf=2, depths=(1,), embedding_dim=2)
    model.get_layer("weighted_l1").alpha.assign([1.0, 1.0])
    model.get_layer("similarity").set_weights([np.array([[-1.0]]), np.array([0.0])])
    queries = np.array([[1.0, 1.5], [5.5, 0.5], [8.0, 8.0]], np.float32)
    sims = template_similarities(model, queries, templates)
    expected = 1 / (1 + np.exp(np.abs(queries[:, None, :] - templates[None]).sum(-1)))
    np.testing.assert_allclose(sims, expected, rtol=1e-5)
    assert np.argmax(sims, axis=1).tolist() == [0, 1, 2]


def test_keep_best_restores_best_epoch():
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    cb = KeepBest("score")
    cb.set_model(model)
    model.layers[0].kernel.assign([[1.0]])
    cb.on_epoch_end(0, {"score": 0.5})
    model.layers[0].kernel.assign([[2.0]])
    cb.on_epoch_end(1, {"score": 0.4})
    cb.on_train_end()
    assert cb.best_epoch == 0 and float(model.layers[0].kernel.numpy()[0, 0]) == 1.0
    with pytest.raises(ValueError, match="not in the epoch logs"):
        cb.on_epoch_end(2, {"other": 1.0})

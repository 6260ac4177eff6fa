import numpy as np
import pytest

import keras

from shared.training.lars import LARS


def _numpy_lars(w, g, v, *, lr, momentum, wd, eta, excluded):
    if excluded:
        step = g
    else:
        wn, gn = np.linalg.norm(w), np.linalg.norm(g)
        step = eta * wn / (gn + wd * wn) * (g + wd * w)
    v = momentum * v + lr * step
    return w - v, v


def test_two_steps_match_hand_computation():
    w0 = np.array([[1.0, -2.0], [0.5, 3.0]], "float32")
    b0 = np.array([0.1, -0.2], "float32")
    g1 = np.array([[0.3, 0.1], [-0.2, 0.4]], "float32")
    g2 = np.array([[-0.1, 0.2], [0.05, 0.3]], "float32")
    gb = np.array([0.5, -0.5], "float32")
    w = keras.Variable(w0, name="kernel")
    b = keras.Variable(b0, name="bias")
    opt = LARS(learning_rate=0.5, momentum=0.9, weight_decay=0.01, eta=0.02)
    opt.build([w, b])
    ref_w, ref_vw = w0.astype("float64"), np.zeros((2, 2))
    ref_b, ref_vb = b0.astype("float64"), np.zeros(2)
    opt.apply([g1, gb], [w, b])
    # First step by hand: ||w0|| = sqrt(14.25) = 3.7749, ||g1|| = sqrt(0.3) = 0.5477,
    # trust = 0.02 * 3.7749 / (0.5477 + 0.01 * 3.7749) = 0.12895.
    trust = 0.02 * np.sqrt(14.25) / (np.sqrt(0.3) + 0.01 * np.sqrt(14.25))
    assert trust == pytest.approx(0.12895, abs=1e-5)
    np.testing.assert_allclose(w.numpy(), w0 - 0.5 * trust * (g1 + 0.01 * w0), rtol=1e-5)
    ref_w, ref_vw = _numpy_lars(ref_w, g1, ref_vw, lr=0.5, momentum=0.9, wd=0.01, eta=0.02, excluded=False)
    ref_b, ref_vb = _numpy_lars(ref_b, gb, ref_vb, lr=0.5, momentum=0.9, wd=0.01, eta=0.02, excluded=True)
    for g in (g2,):
        opt.apply([g, gb], [w, b])
        ref_w, ref_vw = _numpy_lars(ref_w, g, ref_vw, lr=0.5, momentum=0.9, wd=0.01, eta=0.02, excluded=False)
        ref_b, ref_vb = _numpy_lars(ref_b, gb, ref_vb, lr=0.5, momentum=0.9, wd=0.01, eta=0.02, excluded=True)
    np.testing.assert_allclose(w.numpy(), ref_w, rtol=1e-5)
    np.testing.assert_allclose(b.numpy(), ref_b, rtol=1e-5)
    # The bias moved by the plain momentum update: -0.5*gb then -(0.9*0.5*gb + 0.5*gb).
    np.testing.assert_allclose(b.numpy(), b0 - 0.5 * gb - 0.95 * gb, rtol=1e-5)


def test_exclusion_by_name_and_rank():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2), keras.layers.BatchNormalization()])
    opt = LARS(exclude_rank1=False)
    flags = {v.path.split("/", 1)[1]: opt.is_excluded(v) for v in model.trainable_variables}
    assert flags == {"dense/kernel": False, "dense/bias": True,
                     "batch_normalization/gamma": True, "batch_normalization/beta": True}
    kernel = model.layers[0].kernel
    assert LARS(exclude_from_adaptation=["dense"]).is_excluded(kernel)
    rank1 = keras.Variable(np.ones(3, "float32"), name="scale")
    assert LARS().is_excluded(rank1) and not LARS(exclude_rank1=False).is_excluded(rank1)


def test_exclusion_matches_whole_names_not_words_inside_them():
    model = keras.Sequential([keras.Input((3,)),
                              keras.layers.Dense(2, name="abnormality_head"),
                              keras.layers.Dense(2, name="normal_conv"),
                              keras.layers.Dense(2, name="bias_head"),
                              keras.layers.BatchNormalization(name="conv1_bn")])
    opt = LARS(exclude_rank1=False)
    flags = {v.path.split("/", 1)[1]: opt.is_excluded(v) for v in model.trainable_variables}
    assert flags == {"abnormality_head/kernel": False, "abnormality_head/bias": True,
                     "normal_conv/kernel": False, "normal_conv/bias": True,
                     "bias_head/kernel": False, "bias_head/bias": True,
                     "conv1_bn/gamma": True, "conv1_bn/beta": True}
    assert LARS(exclude_from_adaptation=["conv1_bn"]).is_excluded(model.layers[3].gamma)


def test_zero_gradient_falls_back_to_trust_one():
    w = keras.Variable(np.ones((2, 2), "float32"), name="kernel")
    opt = LARS(learning_rate=0.1, momentum=0.0)
    opt.apply([np.zeros((2, 2), "float32")], [w])
    np.testing.assert_allclose(w.numpy(), np.ones((2, 2)))


def test_serialisation_round_trip_and_fit(tmp_path):
    opt = LARS(learning_rate=0.5, momentum=0.8, weight_decay=1e-4, eta=0.01, nesterov=True)
    clone = keras.optimizers.deserialize(keras.optimizers.serialize(opt))
    assert isinstance(clone, LARS)
    assert clone.get_config() == opt.get_config()
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(optimizer=opt, loss="mse")
    x = np.random.default_rng(0).normal(size=(16, 3)).astype("float32")
    model.fit(x, x.sum(1, keepdims=True), epochs=1, verbose=0)
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded.optimizer, LARS)
    assert loaded.optimizer.momentum == 0.8


def test_bad_arguments():
    with pytest.raises(ValueError, match="momentum"):
        LARS(momentum=1.0)
    with pytest.raises(ValueError, match="eta"):
        LARS(eta=0.0)

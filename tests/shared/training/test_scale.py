import pytest

from shared.training import scale
from shared.testing.distribution import compare_single_and_mirrored


def test_unknown_names_are_refused():
    with pytest.raises(ValueError, match="precision"):
        scale.set_precision("float8")
    with pytest.raises(ValueError, match="strategy"):
        scale.make_strategy("tpu-pod")


def test_multi_worker_needs_tf_config(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ValueError, match="TF_CONFIG"):
        scale.make_strategy("multi-worker")


def test_outside_a_strategy_gather_and_scale_are_identity():
    import tensorflow as tf

    x = tf.constant([[1.0], [2.0]])
    assert scale.gather_across_replicas(x).numpy().tolist() == [[1.0], [2.0]]
    assert float(scale.scale_for_replicas(tf.constant(3.0))) == 3.0


@pytest.mark.slow
def test_custom_train_step_same_on_two_replicas():
    result = compare_single_and_mirrored("tests.shared.training.scale_models:build",
                                         "tests.shared.training.scale_models:data", steps=3)
    assert result["replicas"] == 2
    # One global batch of 16 rows split over two replicas: each replica sees the
    # other's rows through the gather, and the update equals the single-device one.
    assert result["mirrored"]["global_rows"][-1] == 16.0
    assert result["single"]["loss"] == pytest.approx(result["mirrored"]["loss"], rel=1e-4)
    assert result["max_weight_diff"] < 1e-5


@pytest.mark.slow
def test_mixed_float16_stays_finite_on_two_replicas():
    result = compare_single_and_mirrored("tests.shared.training.scale_models:build",
                                         "tests.shared.training.scale_models:data", steps=3,
                                         precision="mixed_float16")
    assert result["finite"]
    assert result["single"]["loss"] == pytest.approx(result["mirrored"]["loss"], rel=2e-2)


@pytest.mark.slow
def test_overflow_on_one_replica_skips_the_step_on_all():
    import json
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "tests.shared.training.skip_check"], check=True,
                         capture_output=True, text=True, timeout=120).stdout
    result = json.loads(out.strip().splitlines()[-1])
    # With the decision shared, the step is skipped: the weight keeps its value and the
    # loss scale halves (1024 -> 512), as on one device with an overflow.
    assert result["shared"] == {"var": 1.0, "scale": 512.0}
    # Without it the optimizer looks at the first replica only, applies the step, and
    # the second replica's infinite gradient reaches the weight.
    assert result["first_replica_only"]["var"] == float("-inf")
    assert result["first_replica_only"]["scale"] == 1024.0


def test_clear_session_keeps_the_dtype_policy():
    import keras

    scale.set_precision("mixed_float16")
    # Keras's own clear_session resets the policy to float32 ...
    keras.backend.clear_session()
    assert keras.mixed_precision.global_policy().name == "float32"
    # ... the shared one keeps it, so later models train under --precision.
    scale.set_precision("mixed_bfloat16")
    scale.clear_session()
    assert keras.mixed_precision.global_policy().name == "mixed_bfloat16"
    assert keras.layers.Dense(2).dtype_policy.name == "mixed_bfloat16"


def test_strategy_scope_of_none_is_the_default_strategy():
    import tensorflow as tf

    with scale.strategy_scope(None):
        assert not tf.distribute.has_strategy()
    mirrored = scale.make_strategy("mirrored")
    with scale.strategy_scope(mirrored):
        assert tf.distribute.get_strategy() is mirrored

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _fresh_keras_state(request):
    """Each test starts from a clean Keras session and the float32 policy.

    Tests marked `no_keras` build no Keras objects and skip the reset (a full garbage
    collection, 0.3-1 s a test under load).
    """
    yield
    if request.node.get_closest_marker("no_keras") is not None:
        return
    import keras

    keras.mixed_precision.set_global_policy("float32")
    keras.backend.clear_session()

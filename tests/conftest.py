import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _fresh_keras_state():
    """Each test starts from a clean Keras session and the float32 policy."""
    yield
    import keras

    keras.mixed_precision.set_global_policy("float32")
    keras.backend.clear_session()

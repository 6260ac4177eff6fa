"""The MONAI-style tensor specs that bundle metadata is built from, against hand-written ones."""

from shared.io.bundle import image_input_spec, probabilities_output_spec


def test_image_input_spec_is_the_single_channel_magnitude_image():
    assert image_input_spec((48, 48), modality="MR", channel="LGE", value_range=(0, 1)) == {
        "type": "image", "format": "magnitude", "modality": "MR", "num_channels": 1,
        "spatial_shape": [48, 48], "dtype": "float32", "value_range": [0, 1],
        "is_patch_data": False, "channel_def": {"0": "LGE"}}


def test_probabilities_output_spec_names_one_channel_per_class():
    assert probabilities_output_spec(("grade 1", "grade 2", "grade 3")) == {
        "type": "probabilities", "format": "classification", "num_channels": 3,
        "spatial_shape": [1], "dtype": "float32", "value_range": [0, 1],
        "channel_def": {"0": "grade 1", "1": "grade 2", "2": "grade 3"}}

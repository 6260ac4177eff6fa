"""COVIDx loader and preprocessing: files written by the tests, numbers worked out by hand."""

import cv2
import numpy as np
import pytest

from covidnet_siamese.data import (border_mask, crop_border, load_covidx, load_split, parse_split_file,
                                   preprocess_image, read_grayscale, split_validation, standardize)


def _write_png(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), array)


def _dataset(root, lines, images, split="train"):
    for name, array in images.items():
        _write_png(root / split / name, array)
    (root / f"{split}_split.txt").write_text("\n".join(lines) + "\n")


def test_four_and_three_column_split_files(tmp_path):
    four = tmp_path / "four.txt"
    four.write_text("p1 a.png normal cohen\np2 b.png COVID-19 fig1\n\np3 c.png pneumonia rsna\n")
    entries, skipped = parse_split_file(four)
    assert [(e.line, e.patient_id, e.filename, e.label, e.source) for e in entries] == [
        (1, "p1", "a.png", 0, "cohen"), (2, "p2", "b.png", 2, "fig1"), (4, "p3", "c.png", 1, "rsna")]
    assert skipped == []
    three = tmp_path / "three.txt"
    three.write_text("7 x.jpg pneumonia\n8 y.jpg COVID-19\n")
    entries, _ = parse_split_file(three)
    assert [(e.patient_id, e.filename, e.label, e.source) for e in entries] == [
        ("7", "x.jpg", 1, ""), ("8", "y.jpg", 2, "")]


def test_split_file_errors_name_file_and_line(tmp_path):
    bad = tmp_path / "split.txt"
    bad.write_text("p1 a.png normal src\np2 b.png influenza src\n")
    with pytest.raises(ValueError, match=r"split\.txt, line 2: field 'class': unknown class 'influenza'"):
        parse_split_file(bad)
    bad.write_text("p1 a.png normal src extra\n")
    with pytest.raises(ValueError, match=r"line 1: expected 4 columns"):
        parse_split_file(bad)
    entries, skipped = parse_split_file(bad, on_error="skip")
    assert entries == [] and skipped[0][0] == 1
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        parse_split_file(tmp_path / "missing.txt")


def test_missing_and_unreadable_images(tmp_path):
    img = np.full((8, 8), 100, np.uint8)
    _dataset(tmp_path, ["p1 ok.png normal s", "p2 gone.png pneumonia s", "p3 junk.png COVID-19 s"], {"ok.png": img})
    (tmp_path / "train" / "junk.png").write_bytes(b"not a png")
    with pytest.raises(FileNotFoundError, match=r"train_split\.txt, line 2: image file not found: .*gone\.png"):
        load_split(tmp_path, "train", size=4, min_side=1)
    loaded = load_split(tmp_path, "train", size=4, on_error="skip", min_side=1)
    assert loaded.images.shape == (1, 4, 4, 1) and loaded.labels.tolist() == [0]
    assert [s[0] for s in loaded.skipped] == [2, 3]
    assert "unreadable" in loaded.skipped[1][2] and "junk.png" in loaded.skipped[1][1]
    (tmp_path / "train_split.txt").write_text("p3 junk.png COVID-19 s\n")
    with pytest.raises(ValueError, match=r"line 1: .*junk\.png: unreadable image file"):
        load_split(tmp_path, "train", size=4, min_side=1)


def test_preprocessing_by_hand(tmp_path):
    # 4x4 image of 2x2 blocks; INTER_AREA halving averages each block.
    img = np.array([[0, 0, 255, 255], [0, 0, 255, 255], [51, 51, 102, 102], [51, 153, 102, 102]], np.uint8)
    colour = np.stack([img] * 3, axis=-1)  # a colour file with equal channels is the same grey image
    _write_png(tmp_path / "g.png", img)
    _write_png(tmp_path / "c.png", colour)
    grey = read_grayscale(tmp_path / "g.png", min_side=1)
    np.testing.assert_allclose(read_grayscale(tmp_path / "c.png", min_side=1), grey, atol=1 / 255)
    small = preprocess_image(grey, 2)
    expected = np.array([[0.0, 1.0], [(51 * 3 + 153) / 4 / 255, 0.4]])
    np.testing.assert_allclose(small, expected, atol=1e-6)
    # Standardisation with the training set's global mean and std.
    x = np.array([0.0, 0.5, 1.0], np.float32)
    np.testing.assert_allclose(standardize(x, 0.5, 0.25), [-2.0, 0.0, 2.0])
    with pytest.raises(ValueError, match="standard deviation"):
        standardize(x, 0.5, 0.0)


def test_crop_and_border_mask():
    image = np.arange(100, dtype=np.float32).reshape(10, 10)
    np.testing.assert_array_equal(crop_border(image, 0.1), image[1:9, 1:9])
    mask = border_mask(10, 0.2)
    assert mask.sum() == 100 - 36 and mask[5, 5] == 0 and mask[0, 5] == 1


def test_split_validation_is_stratified_and_seeded():
    labels = np.repeat([0, 1, 2], [50, 30, 10])
    train, val = split_validation(labels, 0.2, seed=3)
    assert np.bincount(labels[val]).tolist() == [10, 6, 2]
    assert len(np.intersect1d(train, val)) == 0 and len(train) + len(val) == 90
    np.testing.assert_array_equal(val, split_validation(labels, 0.2, seed=3)[1])


def test_load_covidx_uses_training_statistics(tmp_path):
    rng = np.random.default_rng(0)
    train = {f"t{i}.png": rng.integers(0, 256, (6, 6), dtype=np.uint8) for i in range(12)}
    test = {"s0.png": np.full((6, 6), 255, np.uint8)}
    _dataset(tmp_path, [f"p{i} t{i}.png {['normal', 'pneumonia', 'COVID-19'][i % 3]} s" for i in range(12)], train)
    _dataset(tmp_path, ["q s0.png COVID-19 s"], test, split="test")
    data = load_covidx(tmp_path, size=3, val_fraction=0.2, seed=0, min_side=1, min_test_per_class=0)
    assert data.x_train.shape == (9, 3, 3, 1) and data.x_val.shape == (3, 3, 3, 1)
    assert abs(float(data.x_train.mean())) < 1e-5 and abs(float(data.x_train.std()) - 1) < 1e-4
    np.testing.assert_allclose(data.x_test, (1.0 - data.mean) / data.std, rtol=1e-5)
    assert data.y_test.tolist() == [2]


def test_exact_validation_counts_match_the_paper():
    # 20 % of the paper's 223 COVID-19 training-split images rounds to 45; the paper holds out 44.
    labels = np.repeat([0, 1, 2], [6373 + 1593, 4361 + 1090, 179 + 44])
    assert np.bincount(labels[split_validation(labels, 0.2, seed=0)[1]]).tolist()[2] == 45
    train, val = split_validation(labels, 0.2, seed=0, val_counts=(1593, 1090, 44))
    assert np.bincount(labels[val]).tolist() == [1593, 1090, 44]
    assert np.bincount(labels[train]).tolist() == [6373, 4361, 179]


def test_sixteen_bit_float_and_exif_orientation(tmp_path):
    from PIL import Image

    ramp = (np.arange(16, dtype=np.uint16).reshape(4, 4) * 4000)
    _write_png(tmp_path / "r16.png", ramp)
    np.testing.assert_allclose(read_grayscale(tmp_path / "r16.png", min_side=1), ramp / 65535.0, atol=1e-7)
    # A JPEG stored sideways with EXIF orientation 6 (rotate 90 degrees clockwise to view).
    stored = np.zeros((16, 32), np.uint8)
    stored[:, :8] = 255  # bright left edge of the stored pixels
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(stored).save(tmp_path / "rot.jpg", exif=exif.tobytes(), quality=95)
    shown = read_grayscale(tmp_path / "rot.jpg")
    assert shown.shape == (32, 16)  # turned upright
    assert shown[:8].mean() > 0.9 and shown[-8:].mean() < 0.1  # the left edge is now the top
    nan = np.full((4, 4), 0.5, np.float32)
    nan[1, 2] = np.nan
    assert cv2.imwrite(str(tmp_path / "nan.tiff"), nan)
    with pytest.raises(ValueError, match="NaN/Inf"):
        read_grayscale(tmp_path / "nan.tiff", min_side=1)


def test_byte_order_mark_and_duplicates(tmp_path):
    split = tmp_path / "split.txt"
    split.write_bytes("\ufeffp1 a.png normal s\np2 b.png COVID-19 s\n".encode("utf-8"))
    entries, _ = parse_split_file(split)
    assert entries[0].patient_id == "p1"
    split.write_text("p1 a.png normal s\np2 a.png COVID-19 s\n")
    with pytest.raises(ValueError, match="line 2: field 'filename': 'a.png' is listed twice"):
        parse_split_file(split)

"""Bad inputs of `medrepro covidnet-siamese run --data ROOT` and `predict --model RUN_DIR`.

Each case writes a small COVIDx folder (split files `patient_id filename class source`,
PNGs in `train/` and `test/`) or a run folder's `bundle.json`, breaks one thing and
checks the one error line: it names the file, the field and what was expected, exit
status 2, no traceback. Every error comes before any model trains.
"""

import json

import cv2
import numpy as np
import pytest

from covidnet_siamese.config import CLASS_NAMES
from shared.testing.bad_input import assert_one_line_error

pytestmark = pytest.mark.no_keras

PER_CLASS = {"train": 4, "test": 2}


def _write_covidx(root):
    """A COVIDx folder with PER_CLASS images of each class per split (24 x 24 grey PNGs)."""
    rng = np.random.default_rng(0)
    for split, n in PER_CLASS.items():
        (root / split).mkdir(parents=True)
        lines = []
        for c, name in enumerate(CLASS_NAMES):
            for i in range(n):
                fname = f"{split}-{c}-{i}.png"
                cv2.imwrite(str(root / split / fname), rng.integers(0, 256, (24, 24), dtype=np.uint8))
                lines.append(f"p{c}{i} {fname} {name} synthetic")
        (root / f"{split}_split.txt").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture
def root(tmp_path):
    return _write_covidx(tmp_path / "covidx")


def _run(root, tmp_path, *extra):
    return ["covidnet-siamese", "run", "--preset", "tiny", "--data", str(root), "--out", str(tmp_path / "run"),
            "--store", f"sqlite:///{tmp_path / 'store.sqlite'}", "--no-progress", *extra]


def _split_lines(root, split="train"):
    return (root / f"{split}_split.txt").read_text().splitlines()


def _write_split(root, lines, split="train", encoding="utf-8"):
    path = root / f"{split}_split.txt"
    path.write_bytes(("\n".join(lines) + "\n").encode(encoding))
    return path


def _image_named_on_line(root, line=1, split="train"):
    return root / split / _split_lines(root, split)[line - 1].split()[1]


# --- the data folder and the split files ----------------------------------------------
def test_missing_data_folder(tmp_path):
    assert_one_line_error(_run(tmp_path / "nowhere", tmp_path), "nowhere", "no such folder", "COVIDx folder")


def test_empty_data_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    assert_one_line_error(_run(tmp_path / "empty", tmp_path), "train_split.txt", "split file not found",
                          "patient_id filename class source")


def test_missing_test_split_file(root, tmp_path):
    (root / "test_split.txt").unlink()
    assert_one_line_error(_run(root, tmp_path), "test_split.txt", "split file not found")


def test_named_split_file_missing(root, tmp_path):
    assert_one_line_error(_run(root, tmp_path, "--train-split", root / "other.txt"), "--train-split",
                          "other.txt", "not found")


def test_empty_split_file(root, tmp_path):
    _write_split(root, [""], split="test")
    assert_one_line_error(_run(root, tmp_path), "test_split.txt", "no images could be loaded", "at least one line")


def test_every_line_skipped_leaves_no_training_images(root, tmp_path):
    for path in (root / "train").iterdir():
        path.unlink()
    assert_one_line_error(_run(root, tmp_path, "--skip-bad-images"), "train_split.txt",
                          "no images could be loaded")


def test_split_line_names_missing_image(root, tmp_path):
    _image_named_on_line(root, 3).unlink()
    assert_one_line_error(_run(root, tmp_path), "train_split.txt", "line 3", "image file not found",
                          _image_named_on_line(root, 3).name)


def test_unknown_label(root, tmp_path):
    lines = _split_lines(root)
    lines[4] = lines[4].replace("pneumonia", "viral")
    _write_split(root, lines)
    assert_one_line_error(_run(root, tmp_path), "train_split.txt", "line 5", "field 'class'", "'viral'",
                          "COVID-19")


def test_wrong_column_count(root, tmp_path):
    lines = _split_lines(root)
    lines[1] = " ".join(lines[1].split()[:2])
    _write_split(root, lines)
    assert_one_line_error(_run(root, tmp_path), "train_split.txt", "line 2", "expected 4 columns", "found 2")


def test_duplicate_image_in_split(root, tmp_path):
    lines = _split_lines(root, "test")
    _write_split(root, lines + [lines[0].replace(lines[0].split()[0], "p99")], split="test")
    assert_one_line_error(_run(root, tmp_path), "test_split.txt", f"line {len(lines) + 1}", "field 'filename'",
                          "listed twice", "line 1")


def test_byte_order_mark_is_not_part_of_the_first_id(root, tmp_path):
    # With the mark decoded away the file parses, and the error is the real one further down.
    lines = _split_lines(root)
    lines[6] = lines[6].replace("COVID-19", "covid-20").replace("pneumonia", "covid-20").replace("normal",
                                                                                                 "covid-20")
    _write_split(root, lines, encoding="utf-8-sig")
    line = assert_one_line_error(_run(root, tmp_path), "train_split.txt", "line 7", "'covid-20'")
    assert "line 1" not in line


def test_split_file_not_utf8(root, tmp_path):
    _write_split(root, _split_lines(root), encoding="utf-16")
    assert_one_line_error(_run(root, tmp_path), "train_split.txt", "must be UTF-8")


def test_too_few_images_of_a_class(root, tmp_path):
    lines = [line for line in _split_lines(root) if "COVID-19" not in line.split()[2]]
    _write_split(root, lines + [f"p9 {_image_named_on_line(root, 1).name.replace('-0-0', '-2-0')} COVID-19 s"])
    assert_one_line_error(_run(root, tmp_path), "train_split.txt", "field 'class'", "at least 2", "COVID-19")


# --- the image files --------------------------------------------------------------------
def test_truncated_png(root, tmp_path):
    path = _image_named_on_line(root, 2)
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    assert_one_line_error(_run(root, tmp_path), "train_split.txt", "line 2", path.name, "truncated PNG", "IEND")


def test_truncated_jpeg(root, tmp_path):
    # OpenCV decodes a cut-short JPEG without complaint; the loader must not.
    lines = _split_lines(root)
    name = lines[0].split()[1].replace(".png", ".jpg")
    image = np.random.default_rng(1).integers(0, 256, (24, 24), dtype=np.uint8)
    assert cv2.imwrite(str(root / "train" / name), image)
    data = (root / "train" / name).read_bytes()
    (root / "train" / name).write_bytes(data[: len(data) * 2 // 3])
    lines[0] = lines[0].replace(lines[0].split()[1], name)
    _write_split(root, lines)
    assert_one_line_error(_run(root, tmp_path), "train_split.txt", "line 1", name, "truncated JPEG", "FFD9")


def test_corrupt_jpeg(root, tmp_path):
    lines = _split_lines(root, "test")
    name = "broken.jpg"
    (root / "test" / name).write_bytes(b"\xff\xd8\xff\xe0" + b"garbage" * 20 + b"\xff\xd9")
    lines[1] = lines[1].replace(lines[1].split()[1], name)
    _write_split(root, lines, split="test")
    assert_one_line_error(_run(root, tmp_path), "test_split.txt", "line 2", name, "unreadable image file",
                          "PNG, JPEG or TIFF")


def test_file_that_is_not_an_image(root, tmp_path):
    lines = _split_lines(root)
    np.save(root / "train" / "scan.npy", np.zeros((24, 24), np.float32))
    lines[3] = lines[3].replace(lines[3].split()[1], "scan.npy")
    _write_split(root, lines)
    assert_one_line_error(_run(root, tmp_path), "line 4", "scan.npy", "unreadable image file", "PNG, JPEG or TIFF")


def _tiff_on_line(root, line, array):
    lines = _split_lines(root)
    name = f"film{line}.tiff"
    assert cv2.imwrite(str(root / "train" / name), array)
    lines[line - 1] = lines[line - 1].replace(lines[line - 1].split()[1], name)
    _write_split(root, lines)
    return name


def test_integer_tiff_has_the_wrong_dtype(root, tmp_path):
    name = _tiff_on_line(root, 2, np.zeros((24, 24), np.int32))
    assert_one_line_error(_run(root, tmp_path), "line 2", name, "pixel dtype", "uint8, uint16 or float", "int32")


def test_five_channel_tiff(root, tmp_path):
    import tifffile

    lines = _split_lines(root)
    tifffile.imwrite(root / "train" / "five.tiff", np.zeros((24, 24, 5), np.uint8), photometric="minisblack",
                     planarconfig="contig")
    lines[0] = lines[0].replace(lines[0].split()[1], "five.tiff")
    _write_split(root, lines)
    assert_one_line_error(_run(root, tmp_path), "line 1", "five.tiff", "1, 3 or 4 channels")


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_float_tiff_with_nan_or_inf(root, tmp_path, bad):
    image = np.full((24, 24), 0.5, np.float32)
    image[3, 4] = bad
    name = _tiff_on_line(root, 5, image)
    assert_one_line_error(_run(root, tmp_path), "train_split.txt", "line 5", name, "must be finite",
                          "1 NaN/Inf pixel")


def test_float_tiff_outside_unit_range(root, tmp_path):
    name = _tiff_on_line(root, 2, np.full((24, 24), 200.0, np.float32))
    assert_one_line_error(_run(root, tmp_path), "line 2", name, "must lie in [0, 1]", "200")


# --- predict: the run folder's bundle.json ---------------------------------------------
def _bundle(tmp_path, **changes):
    run = tmp_path / "run_dir"
    run.mkdir(exist_ok=True)
    (run / "siamese.keras").write_bytes(b"not a keras archive")
    arm = {"model": "siamese.keras", "net": "siamese", "image_size": 32, "crop_fraction": 0.0,
           "mean": 0.4, "std": 0.2, "templates": np.full((3, 4), 0.5).tolist()}
    arm.update(changes)
    for key in [k for k, v in changes.items() if v is None]:
        arm.pop(key)
    (run / "bundle.json").write_text(json.dumps({"class_names": list(CLASS_NAMES), "arms": {"siamese": arm}}))
    return run


def _predict(run, image, *extra):
    return ["covidnet-siamese", "predict", "--model", str(run), str(image), *extra]


def test_predict_without_bundle(root, tmp_path):
    (tmp_path / "empty_run").mkdir()
    assert_one_line_error(_predict(tmp_path / "empty_run", _image_named_on_line(root, 1, "test")), "bundle.json",
                          "finished")


def test_predict_bundle_not_json(root, tmp_path):
    run = _bundle(tmp_path)
    (run / "bundle.json").write_text("{arms: ")
    assert_one_line_error(_predict(run, _image_named_on_line(root, 1, "test")), "bundle.json", "not valid JSON")


@pytest.mark.parametrize("field", ["mean", "std", "image_size", "templates"])
def test_predict_bundle_missing_field(root, tmp_path, field):
    run = _bundle(tmp_path, **{field: None})
    assert_one_line_error(_predict(run, _image_named_on_line(root, 1, "test")), "bundle.json", f"'{field}'")


@pytest.mark.parametrize("field, value, expected", [
    ("mean", float("nan"), "finite number"),
    ("std", 0.0, "> 0"),
    ("std", "0.2", "finite number"),
    ("image_size", 31.5, "integer"),
    ("crop_fraction", 0.7, "[0.0, 0.5)"),
    ("net", "resnet", "'siamese' or 'single'"),
])
def test_predict_bundle_field_out_of_range(root, tmp_path, field, value, expected):
    run = _bundle(tmp_path, **{field: value})
    assert_one_line_error(_predict(run, _image_named_on_line(root, 1, "test")), "bundle.json", f"'{field}'",
                          expected)


@pytest.mark.parametrize("templates, expected", [
    (np.zeros((2, 4)).tolist(), "shape [2, 4]"),
    ([[0.1, 0.2], [0.3], [0.4, 0.5]], "ragged"),
    ([[0.1, float("nan")], [0.3, 0.1], [0.4, 0.5]], "NaN/Inf"),
])
def test_predict_bundle_bad_templates(root, tmp_path, templates, expected):
    run = _bundle(tmp_path, templates=templates)
    assert_one_line_error(_predict(run, _image_named_on_line(root, 1, "test")), "bundle.json", "'templates'",
                          expected)


def test_predict_unknown_arm(root, tmp_path):
    run = _bundle(tmp_path)
    assert_one_line_error(_predict(run, _image_named_on_line(root, 1, "test"), "--arm", "single"), "bundle.json",
                          "'arms'", "'single'", "siamese")


def test_predict_model_file_missing(root, tmp_path):
    run = _bundle(tmp_path, model="gone.keras")
    assert_one_line_error(_predict(run, _image_named_on_line(root, 1, "test")), "gone.keras", "'model'",
                          "not found")


def test_predict_corrupt_model_file(root, tmp_path):
    run = _bundle(tmp_path)
    assert_one_line_error(_predict(run, _image_named_on_line(root, 1, "test")), "siamese.keras",
                          "not a readable Keras model")


def test_predict_image_with_nan(root, tmp_path):
    run = _bundle(tmp_path)
    image = np.full((24, 24), 0.5, np.float32)
    image[0, 0] = np.nan
    cv2.imwrite(str(tmp_path / "new.tiff"), image)
    assert_one_line_error(_predict(run, tmp_path / "new.tiff"), "new.tiff", "must be finite")


def test_predict_missing_image(root, tmp_path):
    run = _bundle(tmp_path)
    assert_one_line_error(_predict(run, tmp_path / "absent.png"), "absent.png", "image file not found")


# --- split entries that lead out of their image folder ----------------------------------
def _point_line_at(root, line, name, split="train"):
    lines = _split_lines(root, split)
    fields = lines[line - 1].split()
    fields[1] = name
    lines[line - 1] = " ".join(fields)
    _write_split(root, lines, split=split)


def test_split_entry_into_the_test_folder(root, tmp_path):
    # `../test/<image>` would train on a test image: train / test leakage.
    _point_line_at(root, 2, f"../test/{_split_lines(root, 'test')[0].split()[1]}")
    assert_one_line_error(_run(root, tmp_path), "train_split.txt", "line 2", "field 'filename'", "'..'")


def test_split_entry_with_an_absolute_path(root, tmp_path):
    outside = tmp_path / "elsewhere.png"
    cv2.imwrite(str(outside), np.zeros((24, 24), np.uint8))
    _point_line_at(root, 3, str(outside))
    assert_one_line_error(_run(root, tmp_path), "train_split.txt", "line 3", "field 'filename'", "absolute path")


def test_split_entry_through_a_link_leading_out(root, tmp_path):
    (root / "train" / "linked").symlink_to(root / "test")
    _point_line_at(root, 4, f"linked/{_split_lines(root, 'test')[1].split()[1]}")
    assert_one_line_error(_run(root, tmp_path), "train_split.txt", "line 4", "field 'filename'", "outside")


def test_leaving_the_folder_is_refused_even_when_skipping_bad_images(root, tmp_path):
    _point_line_at(root, 1, "../../etc/hostname", split="test")
    assert_one_line_error(_run(root, tmp_path, "--skip-bad-images"), "test_split.txt", "line 1", "'..'")


# --- images whose size is wrong ---------------------------------------------------------
def _png_declaring(width, height):
    import struct
    import zlib

    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
            + chunk(b"IEND", b""))


def _jpeg_declaring(width, height):
    import struct

    data = bytearray(cv2.imencode(".jpg", np.full((24, 24), 128, np.uint8))[1].tobytes())
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def _refused_within(limit_mb, argv, *names):
    from shared.testing.memory import peak_allocation

    assert_one_line_error(argv, *names)  # the first run imports what the command needs
    peak = peak_allocation(lambda: assert_one_line_error(argv, *names))
    assert peak < limit_mb * 2**20, f"refusing took {peak / 2**20:.0f} MB"


@pytest.mark.parametrize("suffix, forge", [(".png", _png_declaring), (".jpg", _jpeg_declaring)])
def test_header_declaring_60000_by_60000_pixels(root, tmp_path, suffix, forge):
    name = f"huge{suffix}"
    (root / "train" / name).write_bytes(forge(60000, 60000))
    _point_line_at(root, 2, name)
    _refused_within(200, _run(root, tmp_path), "train_split.txt", "line 2", name, "60000 x 60000",
                    "at most")


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".tiff"])
def test_one_pixel_xray(root, tmp_path, suffix):
    name = f"dot{suffix}"
    assert cv2.imwrite(str(root / "train" / name), np.full((1, 1), 120, np.uint8))
    _point_line_at(root, 5, name)
    assert_one_line_error(_run(root, tmp_path), "train_split.txt", "line 5", name, "1 x 1", "at least 16 x 16")


def test_predict_one_pixel_image(root, tmp_path):
    run = _bundle(tmp_path)
    cv2.imwrite(str(tmp_path / "dot.png"), np.zeros((1, 1), np.uint8))
    assert_one_line_error(_predict(run, tmp_path / "dot.png"), "dot.png", "1 x 1", "at least")


def test_predict_image_declaring_60000_by_60000_pixels(root, tmp_path):
    run = _bundle(tmp_path)
    (tmp_path / "huge.png").write_bytes(_png_declaring(60000, 60000))
    assert_one_line_error(_predict(run, tmp_path / "huge.png"), "huge.png", "60000 x 60000")


# --- a label set the endpoints cannot be measured on -----------------------------------
@pytest.mark.parametrize("dropped", ["COVID-19", "normal"])
def test_test_split_without_a_class(root, tmp_path, dropped):
    # Without a COVID-19 test image its recall is undefined: refused before any model trains.
    lines = [line for line in _split_lines(root, "test") if line.split()[2] != dropped]
    _write_split(root, lines, split="test")
    line = assert_one_line_error(_run(root, tmp_path), "test_split.txt", "field 'class'", dropped,
                                 "every class")
    assert not (tmp_path / "run").exists() or not any((tmp_path / "run").iterdir()), line


def test_test_split_of_one_class(root, tmp_path):
    lines = [line for line in _split_lines(root, "test") if line.split()[2] == "normal"]
    _write_split(root, lines, split="test")
    assert_one_line_error(_run(root, tmp_path), "test_split.txt", "'pneumonia': 0", "'COVID-19': 0")

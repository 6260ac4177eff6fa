"""`--config RUN_DIR/config.json` and `--set FIELD=VALUE` of every paper's `run`
(`shared.cli.config_overrides`): a run's config.json reads back into the preset it was
written from; overrides are parsed against each field's type; bad input is one line,
exit status 2."""

import argparse
import dataclasses
import json

import pytest

from bar_ad.config import get_config as bar_ad_config
from covidnet_siamese.config import PRESETS as COVIDNET_PRESETS
from covidnet_siamese.config import get_preset as covidnet_config
from heatmap_loss.config import get_config as heatmap_config
from hrpqct.config import get_config as hrpqct_config
from lge_qa.config import RECORD_KEYS as LGE_QA_RECORD_KEYS
from lge_qa.config import get_config as lge_qa_config
from lge_qa.config import with_overrides as lge_qa_replace
from shared.cli.config_overrides import (apply_overrides, config_from_record, field_names,
                                         parse_overrides, read_config, run_config)
from shared.testing.bad_input import assert_one_line_error, run_cli
from shared.tracking.runs import make_run_dir

PRESET_NAMES = tuple(COVIDNET_PRESETS)  # every paper has paper, quick, powered and tiny


# What each paper's run hands `make_run_dir` as its config.json (the `make_run_dir(...)`
# call of heatmap_loss/experiment.py, covidnet_siamese/experiment.py, lge_qa/experiment.py
# and lge_qa/limited.py, hrpqct/experiment.py, bar_ad/experiment.py).
def _heatmap_record(config):
    return {"config": dataclasses.asdict(config), "study": "exp1", "seed": 0,
            "source": {"source": "synthetic"}, "store": "sqlite:///runs/results.sqlite"}


def _lge_qa_record(config):
    if config.training_sizes:
        return {**config.to_dict(), "arms": ["baseline", "contrastive"], "study": "limited_label"}
    return {**config.to_dict(), "strategies": list(config.strategies)}


def _bar_ad_record(config):
    return dict(config=dataclasses.asdict(config), frameworks=config.frameworks, seed=0,
                data_root=None, replicas=1, precision="float32", jit_compile=False)


# paper -> (get_preset, record written by its run, preset field, record keys, replace)
PAPERS = {
    "heatmap-loss": (heatmap_config, _heatmap_record, "preset", (), None),
    "covidnet-siamese": (covidnet_config, lambda c: c, "name", (), None),
    "lge-qa": (lge_qa_config, _lge_qa_record, "preset", LGE_QA_RECORD_KEYS, lge_qa_replace),
    "hrpqct": (hrpqct_config, lambda c: c, "preset", (), None),
    "bar-ad": (bar_ad_config, _bar_ad_record, "preset", (), None),
}


def _write_run(folder, paper, preset):
    get_preset, record, *_ = PAPERS[paper]
    make_run_dir(folder, record(get_preset(preset)))
    return folder / "config.json"


def _args(**values):
    base = dict(preset="quick", preset_given=False, config=None, set=[])
    return argparse.Namespace(**{**base, **values})


# Round trip -------------------------------------------------------------------------------

@pytest.mark.no_keras
@pytest.mark.parametrize("paper", list(PAPERS))
@pytest.mark.parametrize("preset", PRESET_NAMES)
def test_a_preset_written_by_the_run_reads_back_equal(tmp_path, paper, preset):
    get_preset, _, preset_field, record_keys, _ = PAPERS[paper]
    path = _write_run(tmp_path / "run", paper, preset)
    other = "paper" if preset != "paper" else "tiny"  # the template's values must not leak
    config = read_config(path, get_preset(other), record_keys)
    assert config == get_preset(preset)
    assert type(config) is type(get_preset(preset))
    # through the `run` command's resolution: the preset the file names is the default
    args = _args(config=tmp_path / "run")
    assert run_config(args, get_preset, preset_field=preset_field,
                      record_keys=record_keys) == get_preset(preset)
    assert args.preset == preset


@pytest.mark.no_keras
def test_nested_dataclass_tuples_and_dicts_of_tuples_come_back_typed(tmp_path):
    config = read_config(_write_run(tmp_path / "run", "covidnet-siamese", "tiny"),
                         covidnet_config("paper"))
    assert isinstance(config.difficulty, type(covidnet_config("tiny").difficulty))
    assert isinstance(config.difficulty.severity_range, tuple)
    assert all(isinstance(v, tuple) for v in config.counts.values())
    hrpqct = read_config(_write_run(tmp_path / "h", "hrpqct", "tiny"), hrpqct_config("paper"))
    assert hrpqct.scans_per_site == (("radius", 12), ("tibia", 12))


@pytest.mark.no_keras
def test_the_file_wins_and_the_preset_fills_what_it_lacks(tmp_path):
    path = _write_run(tmp_path / "run", "hrpqct", "tiny")
    record = json.loads(path.read_text())
    del record["epochs"]
    path.write_text(json.dumps(record))
    args = _args(preset="paper", preset_given=True, config=path)
    config = run_config(args, hrpqct_config)
    assert config.image_size == 32 and config.epochs == hrpqct_config("paper").epochs
    assert args.preset == "tiny"  # the file's preset name: run folder and dirty-tree check
    args = _args(config=path)
    assert run_config(args, hrpqct_config).epochs == hrpqct_config("tiny").epochs


@pytest.mark.no_keras
def test_bar_ad_record_keeps_the_frameworks_it_ran(tmp_path):
    config = bar_ad_config("tiny")
    make_run_dir(tmp_path, {**_bar_ad_record(config), "frameworks": ("bar", "cutmix")})
    assert read_config(tmp_path, bar_ad_config("paper")).frameworks == ("bar", "cutmix")


@pytest.mark.no_keras
@pytest.mark.parametrize("reader, writer", [(r, w) for r in PAPERS for w in PAPERS if r != w])
def test_a_config_of_another_paper_is_refused(tmp_path, reader, writer):
    path = _write_run(tmp_path / "run", writer, "tiny")
    get_preset, _, _, record_keys, _ = PAPERS[reader]
    with pytest.raises(ValueError, match="another paper") as err:
        read_config(path, get_preset("tiny"), record_keys)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


# Overrides --------------------------------------------------------------------------------

@pytest.mark.no_keras
def test_overrides_of_each_type():
    hrpqct = apply_overrides(hrpqct_config("tiny"), [
        "epochs=3", "learning_rate=1e-3", "activation=elu", "baseline_filters=2,2,4,4,4",
        'scans_per_site=[["radius", 3], ["tibia", 4]]', "val-fraction=0.2"])
    assert (hrpqct.epochs, hrpqct.learning_rate, hrpqct.activation) == (3, 1e-3, "elu")
    assert hrpqct.baseline_filters == (2, 2, 4, 4, 4)
    assert hrpqct.scans_per_site == (("radius", 3), ("tibia", 4)) and hrpqct.val_fraction == 0.2
    bar = apply_overrides(bar_ad_config("tiny"), ["class_token=false", "folds_run=none",
                                                  "severity=0,1", "frameworks=scratch,bar"])
    assert bar.class_token is False and bar.folds_run is None
    assert bar.severity == (0.0, 1.0) and isinstance(bar.severity[0], float)
    assert bar.frameworks == ("scratch", "bar")
    heatmap = apply_overrides(heatmap_config("tiny"), ["image_size=40,48", "lr_cce=1e-4,1e-3",
                                                       "backbone_weights=imagenet"])
    assert heatmap.image_size == (40, 48) and heatmap.lr_cce == (1e-4, 1e-3)
    assert heatmap.backbone_weights == "imagenet"
    lge = apply_overrides(lge_qa_config("tiny"), ["quality_shift=0.5", "training_sizes=8,16",
                                                  "encoder_weights=none"])
    assert lge.quality_shift == 0.5 and lge.training_sizes == (8, 16)
    assert lge.encoder_weights is None


@pytest.mark.no_keras
def test_nested_fields_and_dict_keys_by_dotted_name():
    config = apply_overrides(covidnet_config("tiny"), [
        "difficulty.shared_texture=0.2", "difficulty.severity_range=0.1,0.9",
        "default_batch_size.single=8", "counts.train=5,6,7", "batch_norm=false"])
    assert config.difficulty.shared_texture == 0.2
    assert config.difficulty.severity_range == (0.1, 0.9)
    assert config.difficulty.covid_unilateral == covidnet_config("tiny").difficulty.covid_unilateral
    assert config.default_batch_size == {**covidnet_config("tiny").default_batch_size, "single": 8}
    assert config.counts["train"] == (5, 6, 7) and config.batch_norm is False
    whole = apply_overrides(covidnet_config("tiny"),
                            ['default_batch_size={"siamese": 4, "single": 2}'])
    assert whole.default_batch_size == {"siamese": 4, "single": 2}
    assert "difficulty.shared_texture" in field_names(covidnet_config("tiny"))


@pytest.mark.no_keras
def test_a_paper_replace_keeps_dependent_fields():
    args = _args(preset="tiny", preset_given=True, set=["correlation_level=low"])
    config = run_config(args, lge_qa_config, record_keys=LGE_QA_RECORD_KEYS,
                        replace=lge_qa_replace)
    assert config.correlation_level == "low" and config.quality_correlation == 0.2


@pytest.mark.no_keras
@pytest.mark.parametrize("item, named", [
    ("epochs", ["FIELD=VALUE", "epochs"]),
    ("epoch=3", ["'epoch'", "valid:", "epochs", "learning_rate"]),
    ("epochs=many", ["epochs", "(int)", "'many'"]),
    ("epochs=2.5", ["epochs", "(int)", "'2.5'"]),
    ("learning_rate=nan", ["learning_rate", "finite number (float)", "'nan'"]),
    ("baseline_filters=4,x", ["baseline_filters[1]", "(int)", "'x'"]),
    ("scans_per_site=radius", ["scans_per_site", "JSON list", "'radius'"]),
])
def test_bad_overrides_are_one_line_naming_field_type_and_value(item, named):
    with pytest.raises(ValueError) as err:
        parse_overrides([item], hrpqct_config("tiny"))
    message = str(err.value)
    assert message.startswith(f"--set {item}") and "\n" not in message
    for name in named:
        assert name in message, (name, message)


# Through the command line: one line, exit status 2 --------------------------------------

VALID_FIELD = {"heatmap-loss": "heatmap_weight", "covidnet-siamese": "fc_units",
               "lge-qa": "detection_threshold", "hrpqct": "ensemble_size", "bar-ad": "sigma"}


@pytest.mark.no_keras
@pytest.mark.parametrize("paper", list(PAPERS))
def test_unknown_field_through_the_cli(tmp_path, paper):
    assert_one_line_error([paper, "run", "--preset", "tiny", "--out", tmp_path / "run",
                           "--set", "no_such_field=1"],
                          "--set no_such_field=1", "no_such_field", "valid:", VALID_FIELD[paper])
    assert not (tmp_path / "run").exists()


@pytest.mark.no_keras
def test_wrong_type_and_nested_errors_through_the_cli(tmp_path):
    out = ["--out", tmp_path / "run"]
    assert_one_line_error(["hrpqct", "run", "--preset", "tiny", "--set", "epochs=abc", *out],
                          "epochs", "int", "'abc'")
    assert_one_line_error(["covidnet-siamese", "run", "--preset", "tiny", *out,
                           "--set", "difficulty.shared_texture=2"],
                          "difficulty.shared_texture", "[0, 1]")
    assert_one_line_error(["covidnet-siamese", "run", "--preset", "tiny", *out,
                           "--set", "difficulty.texture=0.1"],
                          "difficulty.texture", "difficulty.shared_texture")
    assert not (tmp_path / "run").exists()


@pytest.mark.no_keras
def test_bad_config_files_through_the_cli(tmp_path):
    out = ["--out", tmp_path / "run"]
    other = _write_run(tmp_path / "bar_run", "bar-ad", "tiny")
    assert_one_line_error(["hrpqct", "run", "--config", other, *out], str(other),
                          "another paper")
    broken = tmp_path / "broken.json"
    broken.write_text('{"preset": "tiny", ')
    assert_one_line_error(["lge-qa", "run", "--config", broken, *out], str(broken),
                          "not valid JSON")
    assert_one_line_error(["heatmap-loss", "run", "--config", tmp_path / "missing.json", *out],
                          "missing.json", "no such file")
    typed = _write_run(tmp_path / "h_run", "hrpqct", "tiny")
    typed.write_text(typed.read_text().replace('"epochs": 1', '"epochs": "many"'))
    assert_one_line_error(["hrpqct", "run", "--config", typed, *out], str(typed), "epochs",
                          "(int)", "'many'")
    assert not (tmp_path / "run").exists()


@pytest.mark.no_keras
def test_help_says_the_file_wins():
    code, out, _ = run_cli(["hrpqct", "run", "--help"])
    text = " ".join(out.split())
    assert code == 0 and "--config" in text and "--set FIELD=VALUE" in text
    assert "The file wins" in text


# End to end --------------------------------------------------------------------------------

@pytest.mark.slow
def test_a_tiny_run_re_run_from_its_config_with_a_set(tmp_path):
    """heatmap-loss, the quickest tiny run (about 25 s on an idle 2-core CPU)."""
    first, second = tmp_path / "first", tmp_path / "second"
    # one store per run: the store refuses a second run's rows under the same model ids
    code, out, err = run_cli(["heatmap-loss", "run", "--preset", "tiny", "--out", first,
                              "--store", f"sqlite:///{first}.sqlite", "--no-progress"])
    assert code == 0, out + err
    code, out, err = run_cli(["heatmap-loss", "run", "--config", first / "config.json",
                              "--set", "heatmap_weight=0.5", "--out", second,
                              "--store", f"sqlite:///{second}.sqlite", "--no-progress"])
    assert code == 0, out + err
    before = json.loads((first / "config.json").read_text())["config"]
    after = json.loads((second / "config.json").read_text())["config"]
    assert after["heatmap_weight"] == 0.5 and before["heatmap_weight"] == 1.0
    assert {**after, "heatmap_weight": 1.0} == before
    assert json.loads((second / "protocol.json").read_text())["protocol"]["preset"] == "tiny"

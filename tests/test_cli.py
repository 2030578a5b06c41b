"""Tests for the command line interface (sk_hierclust.cli)."""

import subprocess
import sys

import joblib
import numpy as np
import pytest

from sk_hierclust import cli


def test_module_help():
    result = subprocess.run(
        [sys.executable, "-m", "sk_hierclust", "--help"],
        capture_output=True, text=True, check=True,
    )
    assert "usage: sk-hierclust" in result.stdout
    assert "fit" in result.stdout


def test_fit_help_lists_options(capsys):
    with pytest.raises(SystemExit) as excinfo:
        cli.main(["fit", "--help"])
    assert excinfo.value.code == 0
    out = capsys.readouterr().out
    for option in ("--model", "--dataset", "--data-home", "--n-samples",
                   "--max-leaves", "--max-depth", "--epochs", "--encoder",
                   "--device", "--seed", "--verbose", "--out"):
        assert option in out


@pytest.mark.parametrize(
    "argv",
    [
        ["fit", "--epochs", "1", "2", "3", "4"],
        ["fit", "--model", "hcrl", "--epochs", "1", "2", "3"],
        ["fit", "--model", "vlac", "--max-leaves", "4"],
        ["fit", "--epochs", "-1"],
        ["fit", "--n-samples", "0"],
        ["fit", "--dataset", "cifar10"],
        ["fit", "--model", "nope"],
        [],
    ],
)
def test_bad_arguments_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as excinfo:
        cli.main(argv)
    assert excinfo.value.code == 2


@pytest.mark.parametrize(
    "model, given, expected",
    [("treevae", (5,), (5, 5, 5)), ("treevae", (5, 2), (5, 2, 2)), ("treevae", (5, 2, 7), (5, 2, 7)),
     ("hcrl", (4,), (4, 4)), ("hcrl", (4, 9), (4, 9))],
)
def test_epochs_expansion(model, given, expected):
    assert cli.expand_epochs(model, given) == dict(zip(cli.EPOCH_PARAMS[model], expected))


def test_default_epochs_cover_all_models_and_datasets():
    from sk_hierclust.datasets import DATASETS

    assert set(cli.DEFAULT_EPOCHS) == set(cli.MODELS) == set(cli.EPOCH_PARAMS)
    for model, per_dataset in cli.DEFAULT_EPOCHS.items():
        assert set(per_dataset) == set(DATASETS)
        assert all(len(v) == len(cli.EPOCH_PARAMS[model]) for v in per_dataset.values())


def test_missing_data_returns_1(tmp_path, capsys):
    status = cli.main(["fit", "--dataset", "mnist", "--data-home",
                       str(tmp_path), "--out", str(tmp_path / "out")])
    assert status == 1
    err = capsys.readouterr().err
    assert str(tmp_path / "mnist") in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "encoder, n_features, shape",
    [("mlp", 64, None), ("conv", 64, (1, 8, 8)), ("conv", 784, (1, 28, 28))],
)
def test_build_model(encoder, n_features, shape):
    args = cli.build_parser().parse_args(
        ["fit", "--encoder", encoder, "--max-leaves", "4", "--max-depth", "3",
         "--seed", "7", "-vv"]
    )
    model = cli.build_model(args, cli.expand_epochs("treevae", (3, 2, 1)), n_features)
    params = model.get_params()
    assert isinstance(model, cli.MODELS["treevae"])
    assert params["input_shape"] == shape
    assert params["encoder"] == encoder
    assert (params["n_epochs"], params["n_epochs_grow"],
            params["n_epochs_finetune"]) == (3, 2, 1)
    assert (params["max_leaves"], params["max_depth"]) == (4, 3)
    assert (params["random_state"], params["verbose"]) == (7, 2)
    assert params["device"] == "cpu"


def test_build_model_keeps_the_model_defaults_unless_given():
    args = cli.build_parser().parse_args(["fit", "--model", "hcrl"])
    model = cli.build_model(args, cli.expand_epochs("hcrl", (2, 3)), 64)
    defaults = cli.MODELS["hcrl"]().get_params()
    assert (model.max_depth, model.max_leaves) == (defaults["max_depth"], defaults["max_leaves"])
    assert (model.n_epochs_pretrain, model.n_epochs) == (2, 3)


def test_format_table():
    table = cli.format_table({
        "train": {"DP": 0.5, "LP": 1.0, "ACC": 0.25, "NMI": 0.125},
        "test": {"DP": 0.0, "LP": 0.5, "ACC": 0.75, "NMI": 1.0},
    })
    lines = table.splitlines()
    assert lines[0].split() == ["DP", "LP", "ACC", "NMI"]
    assert lines[1].split() == ["train", "0.500", "1.000", "0.250", "0.125"]
    assert lines[2].split()[0] == "test"


@pytest.mark.parametrize("model", sorted(cli.MODELS))
def test_fit_digits_end_to_end(model, tmp_path, capsys):
    status = cli.main([
        "fit", "--model", model, "--dataset", "digits", "--n-samples", "300",
        "--epochs", "1", "--out", str(tmp_path),
    ])
    assert status == 0
    out = capsys.readouterr().out
    header, train_row = out.splitlines()[1:3]
    assert header.split() == ["DP", "LP", "ACC", "NMI"]
    assert train_row.split()[0] == "train"
    scores = [float(v) for v in train_row.split()[1:]]
    assert all(0.0 <= s <= 1.0 for s in scores)
    assert "fit time:" in out and "leaves:" in out

    assert (tmp_path / "tree.png").stat().st_size > 0
    model = joblib.load(tmp_path / "model.joblib")
    assert str(tmp_path / "model.joblib") in out
    labels = model.predict(np.zeros((2, 64), dtype=np.float32))
    assert labels.shape == (2,)

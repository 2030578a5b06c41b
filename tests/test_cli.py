"""Tests for the command line interface (sk_hierclust.cli)."""

import os
import re
import stat
import subprocess
import sys
import time

import joblib
import numpy as np
import pytest

import sk_hierclust
from sk_hierclust import cli, metrics
from sk_hierclust._base import BaseDeepClusterer
from sk_hierclust.datasets import load_digits

#: Run ``cli.main(argv)`` in a fresh interpreter and report its exit status, its time and
#: the heavy modules it imported (torch, skorch, the models; as JSON on the last line).
_PROBE = """
import json, sys, time
start = time.perf_counter()
from sk_hierclust import cli
try:
    status = cli.main(sys.argv[1:])
except SystemExit as exc:
    status = exc.code
print(json.dumps({"status": status, "seconds": time.perf_counter() - start,
                  "imported": sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "skorch")
                                     or m.startswith(("sk_hierclust.models", "sk_hierclust._base")))}))
"""


def _probe(*argv, **kwargs):
    import json

    result = subprocess.run([sys.executable, "-c", _PROBE, *argv], capture_output=True, text=True,
                            timeout=120, **kwargs)
    return json.loads(result.stdout.strip().splitlines()[-1]), result


def test_module_help():
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "sk_hierclust", "--help"],
        capture_output=True, text=True, check=True,
    )
    assert "usage: sk-hierclust" in result.stdout
    assert "fit" in result.stdout
    assert time.perf_counter() - start < 5


@pytest.mark.parametrize(
    "argv, status",
    [(["--help"], 0), (["fit", "--help"], 0), (["fit", "--model", "nope"], 2), (["fit", "--epochs", "0"], 2),
     (["fit", "--device", "tpu"], 2), (["fit", "--epochs", "1", "2", "3", "4"], 2), ([], 2)],
)
def test_help_and_argument_errors_do_not_import_torch(argv, status):
    report, result = _probe(*argv)
    assert report["status"] == status
    assert report["imported"] == [], f"imported {report['imported']}"
    assert report["seconds"] < 5  # a loose check: torch and the models take seconds to import
    assert "usage: sk-hierclust" in (result.stdout if status == 0 else result.stderr)


def test_package_imports_its_public_names_lazily():
    code = (
        "import sys, sk_hierclust\n"
        "assert sk_hierclust.__version__ == '0.1.0'\n"
        "assert 'torch' not in sys.modules and 'sk_hierclust.models' not in sys.modules\n"
        "assert set(sk_hierclust.__all__) <= set(dir(sk_hierclust))\n"
        "from sk_hierclust import TreeVAE\n"
        "from sk_hierclust.models.treevae import TreeVAE as T\n"
        "assert TreeVAE is T is sk_hierclust.TreeVAE and 'torch' in sys.modules\n"
        "try:\n"
        "    sk_hierclust.NoSuchName\n"
        "except AttributeError as exc:\n"
        "    assert 'NoSuchName' in str(exc)\n"
        "else:\n"
        "    raise AssertionError('no AttributeError')\n"
        "ns = {}\n"
        "exec('from sk_hierclust import *', ns)\n"
        "assert set(sk_hierclust.__all__) <= set(ns)\n"
        "print('ok')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_fit_help_lists_options(capsys):
    with pytest.raises(SystemExit) as excinfo:
        cli.main(["fit", "--help"])
    assert excinfo.value.code == 0
    out = capsys.readouterr().out
    for option in ("--model", "--dataset", "--data-home", "--n-samples",
                   "--max-leaves", "--max-depth", "--epochs", "--encoder",
                   "--device", "--seed", "--verbose", "--quiet", "--out"):
        assert option in out
    text = " ".join(out.split())
    for name, params in cli.EPOCH_PARAMS.items():
        assert f"{name}: {', '.join(params)}" in text


def test_data_home_help_names_every_dataset_folder(capsys):
    with pytest.raises(SystemExit):
        cli.main(["fit", "--help"])
    text = " ".join(capsys.readouterr().out.split())  # undo argparse's line wrapping
    data_home_help = text[text.index("--data-home PATH"):text.index("--n-samples N ")]
    for folder in ("mnist/", "fashion_mnist/", "20newsgroups/"):
        assert folder in data_home_help


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
        ["fit", "--quiet", "--verbose"],
        [],
    ],
)
def test_bad_arguments_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as excinfo:
        cli.main(argv)
    assert excinfo.value.code == 2


def _usage_error(argv, tmp_path, capsys):
    """Run ``fit argv`` on MNIST in an empty data home; return standard error.

    A usage error (status 2) means the arguments were rejected before the data were
    loaded: loading would have returned 1 (missing files).
    """
    with pytest.raises(SystemExit) as excinfo:
        cli.main(["fit", "--dataset", "mnist", "--data-home", str(tmp_path), *argv])
    assert excinfo.value.code == 2
    return capsys.readouterr().err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--max-leaves", "-3", "--out", "OUT"], "'max_leaves' parameter of TreeVAE"),
        (["--model", "hcrl", "--max-leaves", "1", "--out", "OUT"], "'max_leaves' parameter of HCRL"),
        (["--max-depth", "-1", "--out", "OUT"], "'max_depth' parameter"),
        (["--batch-size", "1", "--out", "OUT"], "'batch_size' parameter"),
        (["--epochs", "0", "--out", "OUT"], "--epochs: must be >= 1, got 0"),
        (["--model", "hcrl", "--epochs", "3", "0", "--out", "OUT"], "--epochs: must be >= 1, got 0"),
        (["--device", "tpu", "--out", "OUT"], "invalid choice: 'tpu'"),
        (["--contrastive-weight", "-1", "--out", "OUT"], "--contrastive-weight: must be a finite number >= 0"),
        (["--contrastive-weight", "nan", "--out", "OUT"], "--contrastive-weight: must be a finite number >= 0"),
        (["--contrastive-weight", "2", "--out", "OUT"], "--contrastive-weight 2 needs --augment affine"),
        (["--model", "hcrl", "--augment", "affine", "--out", "OUT"], "treevae's (its contrastive extension)"),
        (["--model", "vlac", "--contrastive-weight", "1", "--out", "OUT"], "treevae's"),
    ],
)
def test_invalid_parameters_are_usage_errors_before_loading(argv, message, tmp_path, capsys):
    out = tmp_path / "out"
    err = _usage_error([str(out) if a == "OUT" else a for a in argv], tmp_path, capsys)
    assert message in err
    assert "Traceback" not in err
    assert not out.exists()


@pytest.mark.parametrize("option", [["--encoder", "conv"], ["--augment", "affine"]])
def test_image_options_need_an_image_dataset(option, tmp_path, capsys):
    with pytest.raises(SystemExit) as excinfo:
        cli.main(["fit", "--dataset", "20newsgroups", "--data-home", str(tmp_path), *option,
                  "--out", str(tmp_path / "out")])
    assert excinfo.value.code == 2
    assert f"{' '.join(option)} needs images" in capsys.readouterr().err


def test_cuda_without_cuda_is_a_usage_error(tmp_path, capsys, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    err = _usage_error(["--device", "cuda", "--out", str(tmp_path / "out")], tmp_path, capsys)
    assert "CUDA is not available" in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("below", [False, True])
def test_out_that_is_a_file_fails_before_the_fit(below, tmp_path, capsys):
    target = tmp_path / "results"
    target.write_text("not a folder")
    out = target / "sub" if below else target
    err = _usage_error(["--out", str(out)], tmp_path, capsys)
    assert str(target) in err and "is not a folder" in err
    assert target.read_text() == "not a folder"


@pytest.mark.parametrize("below", [False, True])
def test_out_in_a_read_only_folder_fails_before_the_fit(below, tmp_path, capsys):
    folder = tmp_path / "read_only"
    folder.mkdir()
    folder.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        if os.access(folder, os.W_OK):
            pytest.skip("the folder is writable despite its mode (running as root?)")
        out = folder / "results" if below else folder
        err = _usage_error(["--out", str(out)], tmp_path, capsys)
        assert "not writable" in err and str(folder) in err
    finally:
        folder.chmod(stat.S_IRWXU)


def test_check_out_accepts_new_and_existing_folders(tmp_path):
    assert cli.check_out(tmp_path) is None
    assert cli.check_out(tmp_path / "a" / "b") is None
    assert not (tmp_path / "a").exists()


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


def test_datasets_match_the_loaders():
    from sk_hierclust import datasets

    assert cli.DATASETS == datasets.DATASETS
    assert set(cli.IMAGE_DATASETS) <= set(cli.DATASETS)
    assert set(cli.DEFAULT_ENCODER) == set(cli.DEFAULT_BATCH_SIZE) == set(cli.DATASETS)
    assert {d for d, e in cli.DEFAULT_ENCODER.items() if e == "conv"} <= set(cli.IMAGE_DATASETS)


def test_missing_data_returns_1(tmp_path, capsys):
    status = cli.main(["fit", "--dataset", "mnist", "--data-home",
                       str(tmp_path), "--out", str(tmp_path / "out")])
    assert status == 1
    err = capsys.readouterr().err
    assert str(tmp_path / "mnist") in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "encoder, n_features, shape, augment",
    [("mlp", 64, None, "none"), ("mlp", 64, (1, 8, 8), "affine"), ("conv", 64, (1, 8, 8), "none"),
     ("conv", 784, (1, 28, 28), "none")],
)
def test_build_model(encoder, n_features, shape, augment):
    args = cli.build_parser().parse_args(
        ["fit", "--encoder", encoder, "--max-leaves", "4", "--max-depth", "3",
         "--seed", "7", "-vv", "--augment", augment]
    )
    model = cli.build_model(args, cli.expand_epochs("treevae", (3, 2, 1)), n_features)
    params = model.get_params()
    assert isinstance(model, cli.MODELS["treevae"])
    assert params["input_shape"] == shape
    assert params["encoder"] == encoder
    assert tuple(params[p] for p in cli.EPOCH_PARAMS["treevae"]) == (3, 2, 1)
    assert (params["max_leaves"], params["max_depth"]) == (4, 3)
    assert (params["random_state"], params["verbose"]) == (7, 2)
    assert params["device"] == "cpu"
    # -v: the estimator adds its own progress bar; the command line adds only the phase log
    assert [name for name, _ in params["callbacks"]] == ["phase_printer"]


@pytest.mark.parametrize(
    "options, names",
    [([], ["phase_printer", "progress"]), (["-v"], ["phase_printer"]), (["--quiet"], None)],
)
def test_build_model_progress_callbacks(options, names):
    from skorch.callbacks import Callback, ProgressBar

    args = cli.build_parser().parse_args(["fit", *options])
    callbacks = cli.build_model(args, {}).get_params()["callbacks"]
    if names is None:
        assert callbacks is None
        return
    assert [name for name, _ in callbacks] == names
    assert all(isinstance(cb, Callback) for _, cb in callbacks)
    assert any(isinstance(cb, ProgressBar) for _, cb in callbacks) == (not options)


@pytest.mark.parametrize(
    "argv, expected",
    [([], ("affine", cli.DEFAULT_CONTRASTIVE_WEIGHT)),  # digits: TreeVAE's contrastive extension
     (["--contrastive-weight", "0"], ("affine", 0.0)),
     (["--augment", "none"], (None, 0.0)),
     (["--dataset", "mnist"], (None, 0.0)),
     (["--dataset", "mnist", "--augment", "affine"], ("affine", cli.DEFAULT_CONTRASTIVE_WEIGHT)),
     (["--dataset", "mnist", "--augment", "affine", "--contrastive-weight", "10"], ("affine", 10.0))],
)
def test_augmentation_defaults_and_options(argv, expected):
    args = cli.build_parser().parse_args(["fit", *argv])
    assert cli.augmentation(args) == expected
    params = cli.build_model(args, {}, 784 if "mnist" in argv else 64).get_params()
    assert (params["augment"], params["contrastive_weight"]) == expected
    # other models take no augmentation, on any data set
    dataset = argv[:2] if "mnist" in argv else []
    assert cli.augmentation(cli.build_parser().parse_args(["fit", "--model", "hcrl", *dataset])) == (None, 0.0)


def test_build_model_keeps_the_model_defaults_unless_given():
    args = cli.build_parser().parse_args(["fit", "--model", "hcrl"])
    model = cli.build_model(args, cli.expand_epochs("hcrl", (2, 3)), 64)
    defaults = cli.MODELS["hcrl"]().get_params()
    assert (model.max_depth, model.max_leaves) == (defaults["max_depth"], defaults["max_leaves"])
    assert (model.n_epochs_pretrain, model.n_epochs) == (2, 3)


def test_registry_matches_the_exported_estimators():
    exported = {name.lower(): obj for name in sk_hierclust.__all__
                if isinstance(obj := getattr(sk_hierclust, name), type) and issubclass(obj, BaseDeepClusterer)}
    assert sorted(cli.MODEL_REGISTRY) == sorted(cli.MODELS) == sorted(exported)
    for name, (module, class_name, epoch_params) in cli.MODEL_REGISTRY.items():
        cls = exported[name]
        assert (cls.__module__, cls.__name__) == (module, class_name)
        assert cli.MODELS[name] is cls
        assert epoch_params == cli.EPOCH_PARAMS[name] == tuple(cls._epoch_params)
        assert set(cls._epoch_params) <= set(cls().get_params())


def test_models_and_epoch_params_come_from_the_package():
    assert sorted(cli.MODELS) == ["hcrl", "htvae", "treevae", "vlac"]
    assert len(cli.MODELS) == 4 and "treevae" in cli.MODELS and "nope" not in cli.MODELS
    for name, cls in cli.MODELS.items():
        assert getattr(sk_hierclust, cls.__name__) is cls
        assert cli.EPOCH_PARAMS[name] == cls._epoch_params
    with pytest.raises(KeyError):
        cli.MODELS["nope"]


def _phases_printed(out):
    """The phase names of the ``phase NAME: N epochs in T s`` lines, in order."""
    return re.findall(r"^phase (\S+): \d+ epochs? in [\d.]+ s$", out, flags=re.MULTILINE)


def _unique(names):
    return list(dict.fromkeys(names))


@pytest.mark.parametrize("model", sorted(cli.MODELS))
def test_fit_digits_end_to_end(model, tmp_path, capsys):
    status = cli.main([
        "fit", "--model", model, "--dataset", "digits", "--n-samples", "300",
        "--epochs", "1", "--out", str(tmp_path),
    ])
    assert status == 0
    captured = capsys.readouterr()
    out = captured.out
    lines = out.splitlines()
    assert lines[0].startswith(f"Fitting {model} on digits: 300 samples")
    at = next(i for i, line in enumerate(lines) if line.split() == ["DP", "LP", "ACC", "NMI"])
    train_row = lines[at + 1]
    assert train_row.split()[0] == "train"
    # the printed scores are the training scores of the saved model
    printed = [float(v) for v in train_row.split()[1:]]
    assert "fit time:" in out and "leaves:" in out

    assert (tmp_path / "tree.png").stat().st_size > 0
    fitted = joblib.load(tmp_path / "model.joblib")
    assert str(tmp_path / "model.joblib") in out
    X, y = load_digits()
    expected = metrics.evaluate(fitted, X[:300], y[:300])
    np.testing.assert_allclose(printed, [expected[k] for k in ("DP", "LP", "ACC", "NMI")], atol=5e-4)
    # beside it, the Ward baseline cut at the model's number of leaves
    ward_row = lines[at + 2].split()
    assert ward_row[:2] == ["Ward", "train"]
    ward = cli.ward_scores(X[:300], y[:300], len(fitted.tree_.label_to_node))
    np.testing.assert_allclose([float(v) for v in ward_row[2:]], [ward[k] for k in ("DP", "LP", "ACC", "NMI")],
                               atol=5e-4)

    # progress by default: every training phase, in order, before the scores, and a progress bar
    phases = _unique(row["phase"] for row in fitted.history_)
    assert _phases_printed("\n".join(lines[:at])) == phases
    for phase in phases:
        assert f"phase {phase}: training on " in out
    assert "epoch 1" in captured.err and "it/s" in captured.err


@pytest.mark.parametrize(
    "model, expected",
    [("treevae", ["initial", "grow:", "finetune"]), ("hcrl", ["pretrain", "train"])],
)
def test_fit_prints_the_phases_of_the_model(model, expected, tmp_path, capsys):
    status = cli.main(["fit", "--model", model, "--n-samples", "200", "--epochs", "1",
                       "--out", str(tmp_path)])
    assert status == 0
    phases = _phases_printed(capsys.readouterr().out)
    # in order; TreeVAE trains one "grow:<leaf>" phase per split
    assert _unique(re.sub(r":.*", ":", p) for p in phases) == expected

    # the saved model keeps the progress callbacks; it loads in a fresh interpreter too
    code = ("import sys, joblib; m = joblib.load(sys.argv[1]); "
            "print(*[type(cb).__qualname__ for _, cb in m.get_params()['callbacks']])")
    result = subprocess.run([sys.executable, "-c", code, str(tmp_path / "model.joblib")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["PhasePrinter", "PhaseProgressBar"]


def test_fit_quiet_prints_no_progress(tmp_path, capsys):
    status = cli.main(["fit", "--model", "hcrl", "--n-samples", "200", "--epochs", "1", "--quiet",
                       "--out", str(tmp_path)])
    assert status == 0
    captured = capsys.readouterr()
    assert "phase " not in captured.out
    assert "it/s" not in captured.err and "epoch" not in captured.err
    lines = captured.out.splitlines()
    assert lines[0].startswith("Fitting hcrl") and lines[1].split() == ["DP", "LP", "ACC", "NMI"]
    assert lines[-2:] == [f"wrote {tmp_path / 'tree.png'}", f"wrote {tmp_path / 'model.joblib'}"]


def test_ward_scores_known_answer():
    # two tight pairs far apart: Ward cut at 2 leaves separates them exactly
    X = np.array([[0.0, 0.0], [0.1, 0.0], [5.0, 5.0], [5.1, 5.0]])
    assert cli.ward_scores(X, np.array([0, 0, 1, 1]), 2) == {"DP": 1.0, "LP": 1.0, "ACC": 1.0, "NMI": 1.0}
    # cut at 1 leaf: DP = purity of the root for each same-class pair = 1/2
    assert cli.ward_scores(X, np.array([0, 0, 1, 1]), 1)["DP"] == 0.5


class _PlotSpy:
    """Wrap ``ClusterTree.plot``: record the keyword arguments and axes of every call."""

    def __init__(self, monkeypatch):
        from sk_hierclust.tree import ClusterTree

        self.calls = []
        plot = ClusterTree.plot

        def spy(tree, *args, **kwargs):
            ax = plot(tree, *args, **kwargs)
            self.calls.append((tree, kwargs, ax))
            return ax

        monkeypatch.setattr(ClusterTree, "plot", spy)


def _drawn_thumbnails(ax):
    """Node id -> image data of the thumbnails drawn on ``ax``."""
    from matplotlib.offsetbox import AnnotationBbox

    return {int(a.get_gid().split("-")[1]): a.offsetbox.get_data() for a in ax.artists
            if isinstance(a, AnnotationBbox)}


def test_fit_digits_draws_mean_thumbnails_and_a_progress_bar_per_phase(tmp_path, capsys, monkeypatch):
    spy = _PlotSpy(monkeypatch)
    status = cli.main(["fit", "--model", "hcrl", "--n-samples", "200", "--epochs", "1",
                       "--out", str(tmp_path)])
    assert status == 0
    captured = capsys.readouterr()
    assert (tmp_path / "tree.png").stat().st_size > 0
    (tree, kwargs, ax), = spy.calls
    X, y = load_digits()
    X, y = X[:200], y[:200]
    # by default the picture shows the mean training image of each node, 8 x 8
    np.testing.assert_array_equal(kwargs["images"], X)
    assert kwargs["image_shape"] == (1, 8, 8) and "thumbnails" not in kwargs
    np.testing.assert_array_equal(kwargs["y"], y)
    drawn = _drawn_thumbnails(ax)
    fitted = joblib.load(tmp_path / "model.joblib")
    nodes = fitted.apply(X)
    np.testing.assert_array_equal(kwargs["nodes"], nodes)
    placed = tree.decision_path(nodes).sum(axis=0).A1  # samples in each subtree
    assert sorted(drawn) == np.flatnonzero(placed > 0).tolist()
    np.testing.assert_allclose(drawn[0], X.mean(axis=0).reshape(8, 8), rtol=1e-6)
    leaf = int(nodes[0])
    in_leaf = nodes == leaf
    np.testing.assert_allclose(drawn[leaf], X[in_leaf].mean(axis=0).reshape(8, 8), rtol=1e-6)

    # one progress bar per training phase, named after the phase: "<phase> epoch <k>"
    phases = _unique(row["phase"] for row in fitted.history_)
    assert phases == ["pretrain", "train"]
    for phase in phases:
        assert re.search(rf"(^|\r){phase} epoch 1: +\d+%", captured.err, flags=re.MULTILINE), captured.err


def test_fit_thumbnails_sample_draws_the_node_means_of_generated_images(tmp_path, capsys, monkeypatch):
    spy = _PlotSpy(monkeypatch)
    status = cli.main(["fit", "--model", "vlac", "--n-samples", "200", "--epochs", "1", "--quiet",
                       "--thumbnails", "sample", "--out", str(tmp_path)])
    assert status == 0
    (tree, kwargs, ax), = spy.calls
    assert "images" not in kwargs and kwargs["image_shape"] == (1, 8, 8)
    fitted = joblib.load(tmp_path / "model.joblib")
    expected = np.stack([fitted.sample(cli.N_THUMBNAIL_SAMPLES, node=v).mean(axis=0)
                         for v in range(tree.node_count)])
    np.testing.assert_allclose(kwargs["thumbnails"], expected, rtol=1e-6)
    drawn = _drawn_thumbnails(ax)
    assert sorted(drawn) == list(range(tree.node_count))
    np.testing.assert_allclose(drawn[tree.node_count - 1], expected[-1].reshape(8, 8), rtol=1e-6)


def test_fit_thumbnails_none_draws_no_pictures(tmp_path, capsys, monkeypatch):
    spy = _PlotSpy(monkeypatch)
    status = cli.main(["fit", "--model", "vlac", "--n-samples", "200", "--epochs", "1", "--quiet",
                       "--thumbnails", "none", "--out", str(tmp_path)])
    assert status == 0
    (tree, kwargs, ax), = spy.calls
    assert not {"images", "thumbnails"} & set(kwargs)
    assert _drawn_thumbnails(ax) == {}
    assert (tmp_path / "tree.png").stat().st_size > 0


@pytest.mark.parametrize(
    "options, mode",
    [([], "mean"), (["--dataset", "mnist"], "mean"), (["--dataset", "fashion_mnist"], "mean"),
     (["--dataset", "20newsgroups"], "none"), (["--thumbnails", "sample"], "sample"),
     (["--dataset", "20newsgroups", "--thumbnails", "none"], "none")],
)
def test_thumbnail_mode_defaults_to_mean_images_for_image_datasets(options, mode):
    assert cli.thumbnail_mode(cli.build_parser().parse_args(["fit", *options])) == mode


@pytest.mark.parametrize("mode", ["mean", "sample"])
def test_thumbnails_of_text_are_a_usage_error(mode, tmp_path, capsys):
    with pytest.raises(SystemExit) as excinfo:
        cli.main(["fit", "--dataset", "20newsgroups", "--data-home", str(tmp_path),
                  "--thumbnails", mode, "--out", str(tmp_path / "out")])
    assert excinfo.value.code == 2
    assert f"--thumbnails {mode} needs images" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_save_outputs_refuses_an_unknown_thumbnail_mode(tmp_path):
    with pytest.raises(ValueError, match="thumbnails must be one of"):
        cli.save_outputs(None, None, None, tmp_path, thumbnails="median")

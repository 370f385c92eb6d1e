"""`modelopt_nb.ensembles` beyond the notebook: scikit-learn's estimator checks, equality with `VotingClassifier` on
several data sets, identical results for any `n_jobs`, bad input, and `train_ensemble` on a real Dask cluster."""
import warnings

import numpy as np
import pytest
import torch
from joblib import parallel_config
from sklearn.ensemble import VotingClassifier
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.naive_bayes import GaussianNB
from sklearn.neighbors import KNeighborsClassifier
from sklearn.svm import SVC, LinearSVC
from sklearn.tree import DecisionTreeClassifier
from sklearn.utils.estimator_checks import parametrize_with_checks
from threadpoolctl import threadpool_limits

from modelopt_nb import core
from modelopt_nb.ensembles import (
    VotingEnsemble,
    disagreement,
    expected_calibration_error,
    majority_vote,
    member_seeds,
    train_ensemble,
)


def members():
    return [("logreg", LogisticRegression(max_iter=300)), ("bayes", GaussianNB()),
            ("tree", DecisionTreeClassifier(max_depth=4, random_state=0)), ("knn", KNeighborsClassifier(3))]


def small_mlp(seed):
    return core.mlp([64, 16, 10], seed=seed)


@pytest.fixture(scope="module")
def digits():
    return core.load_dataset("digits")


# Every check passes; none is marked not applicable (the members are ordinary scikit-learn classifiers, and a
# TorchClassifier member is itself check_estimator-clean, see tests/test_core.py).
@parametrize_with_checks([VotingEnsemble([LogisticRegression(), GaussianNB()]),
                          VotingEnsemble([DecisionTreeClassifier(random_state=0), GaussianNB(), KNeighborsClassifier(3)],
                                         voting="hard", weights=[1, 2, 1]),
                          VotingEnsemble([core.TorchClassifier(epochs=2), GaussianNB()], n_jobs=2)])
def test_sklearn_estimator_checks(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # members' convergence warnings on the checks' tiny random data
        check(estimator)


@pytest.mark.parametrize("name", ["digits", "breast_cancer", "wine"])
@pytest.mark.parametrize("weights", [None, [3, 1, 2, 1]])
def test_soft_vote_equals_voting_classifier(name, weights):
    data = core.load_dataset(name)
    ours = VotingEnsemble(members(), weights=weights).fit(data.X_train, data.y_train)
    with threadpool_limits(limits=1):  # the members' own thread count, so the L-BFGS fits agree to the last bit
        theirs = VotingClassifier(members(), voting="soft", weights=weights).fit(data.X_train, data.y_train)
    np.testing.assert_allclose(ours.predict_proba(data.X_test), theirs.predict_proba(data.X_test), rtol=0, atol=1e-12)
    np.testing.assert_array_equal(ours.predict(data.X_test), theirs.predict(data.X_test))


@pytest.mark.parametrize("name", ["digits", "wine"])
def test_hard_vote_equals_voting_classifier_ties_included(name):
    data = core.load_dataset(name)
    ours = VotingEnsemble(members(), voting="hard").fit(data.X_train, data.y_train)
    with threadpool_limits(limits=1):
        theirs = VotingClassifier(members(), voting="hard").fit(data.X_train, data.y_train)
    np.testing.assert_array_equal(ours.predict(data.X_test), theirs.predict(data.X_test))


def test_majority_vote_tie_rule_on_random_votes():
    rng = np.random.default_rng(0)
    votes = rng.integers(0, 4, size=(4, 2000))
    expected = [np.argmax(np.bincount(column, minlength=4)) for column in votes.T]  # scikit-learn's rule
    np.testing.assert_array_equal(majority_vote(votes, n_classes=4), expected)


def test_string_labels_round_trip(digits):
    labels = np.array(list("abcdefghij"))[digits.y_train]
    ensemble = VotingEnsemble(members()[:2]).fit(digits.X_train, labels)
    assert set(ensemble.predict(digits.X_test)) <= set("abcdefghij")
    assert list(ensemble.classes_) == list("abcdefghij")


def test_results_do_not_depend_on_n_jobs(digits):
    runs = [train_ensemble(small_mlp, digits.X_train, digits.y_train, 4, n_jobs=n_jobs, fit_kwargs=dict(epochs=3))
            for n_jobs in (1, 2)]
    for a, b in zip(runs[0].estimators_, runs[1].estimators_):
        assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))
    np.testing.assert_array_equal(runs[0].predict_proba(digits.X_test), runs[1].predict_proba(digits.X_test))
    fitted = [VotingEnsemble([core.TorchClassifier(epochs=3, seed=s) for s in (0, 1)] + members()[:2], n_jobs=n_jobs)
              .fit(digits.X_train, digits.y_train) for n_jobs in (1, 2)]
    np.testing.assert_array_equal(fitted[0].predict_proba(digits.X_test), fitted[1].predict_proba(digits.X_test))


def test_seeds_and_bootstrap(digits):
    assert member_seeds(0, 3) == member_seeds(0, 5)[:3]
    bagged = train_ensemble(lambda seed: DecisionTreeClassifier(random_state=seed), digits.X_train, digits.y_train, 3,
                            bootstrap=True)
    plain = train_ensemble(lambda seed: DecisionTreeClassifier(random_state=seed), digits.X_train, digits.y_train, 3)
    assert disagreement(bagged, digits.X_test) > 0 and disagreement(plain, digits.X_test) > 0
    assert not np.array_equal(bagged.estimators_[0].tree_.threshold, plain.estimators_[0].tree_.threshold)


def test_from_fitted_mixes_torch_and_sklearn(digits):
    net = core.fit(small_mlp(0), digits.X_train, digits.y_train, epochs=3, progress=False)
    logreg = LogisticRegression(max_iter=300).fit(digits.X_train, digits.y_train)
    ensemble = VotingEnsemble.from_fitted([("net", net), ("logreg", logreg)], weights=[1, 3])
    expected = (core.predict_proba(net, digits.X_test) + 3 * core.predict_proba(logreg, digits.X_test)) / 4  # float64
    np.testing.assert_allclose(ensemble.predict_proba(digits.X_test), expected, rtol=0, atol=1e-12)
    assert list(ensemble.named_estimators_) == ["net", "logreg"]
    np.testing.assert_array_equal(ensemble.classes_, np.arange(10))
    hard = VotingEnsemble.from_fitted([net, logreg, net], voting="hard")
    np.testing.assert_array_equal(hard.predict(digits.X_test), core.predict(net, digits.X_test))
    named = VotingEnsemble.from_fitted([net], classes=list("abcdefghij"))
    assert set(named.predict(digits.X_test)) <= set("abcdefghij")


def test_bad_input(digits):
    X, y = digits.X_train, digits.y_train
    net = core.fit(small_mlp(0), X, y, epochs=1, progress=False)
    fitted = LogisticRegression(max_iter=300).fit(X, y)
    on_fewer_classes = GaussianNB().fit(X[y < 5], y[y < 5])
    cases = [
        (lambda: VotingEnsemble([]).fit(X, y), ValueError, "`estimators` is empty"),
        (lambda: VotingEnsemble.from_fitted([]), ValueError, "`estimators` is empty"),
        (lambda: VotingEnsemble(members(), voting="average").fit(X, y), ValueError, "'hard' or 'soft', got 'average'"),
        (lambda: VotingEnsemble(members(), weights=[1, 1]).fit(X, y), ValueError, "one number per member (4)"),
        (lambda: VotingEnsemble(members(), weights=[1, -1, 1, 1]).fit(X, y), ValueError, "non-negative"),
        (lambda: VotingEnsemble(members(), weights=[0, 0, 0, 0]).fit(X, y), ValueError, "not all zero"),
        (lambda: VotingEnsemble([("svm", LinearSVC()), ("bayes", GaussianNB())]).fit(X, y), TypeError, "member 'svm'"),
        (lambda: VotingEnsemble([SVC(probability=False)]).fit(X, y), TypeError, "member 'svc' (SVC) has no `predict_proba`"),
        (lambda: VotingEnsemble([net]).fit(X, y), TypeError, "is a torch module"),
        (lambda: VotingEnsemble.from_fitted([fitted, on_fewer_classes]), ValueError, "fitted on different classes"),
        (lambda: VotingEnsemble.from_fitted([net, on_fewer_classes]), ValueError, "fitted on different classes"),
        (lambda: VotingEnsemble.from_fitted([net], classes=[0, 1]), ValueError, "fitted on different classes"),
        (lambda: VotingEnsemble.from_fitted([LogisticRegression()]), NotFittedError, ""),
        (lambda: VotingEnsemble(members()).fit(X, y[:-1]), ValueError, "inconsistent numbers of samples"),
        (lambda: train_ensemble(small_mlp, X, y, 0), ValueError, "`n_members` must be a positive integer"),
        (lambda: train_ensemble("mlp", X, y), TypeError, "`make_model` must be a callable"),
        (lambda: train_ensemble(small_mlp, X, y, fit_kwargs=dict(seed=1)), ValueError, "must not set `seed`"),
        (lambda: disagreement([net], X), ValueError, "at least two members"),
        (lambda: expected_calibration_error([0, 1], np.ones((3, 2)) / 2), ValueError, "differ in length"),
    ]
    for call, error, message in cases:
        with pytest.raises(error) as info:
            call()
        assert message in str(info.value), (message, str(info.value))
    with pytest.raises(ValueError, match="NaN"):
        VotingEnsemble(members()).fit(np.where(X == 0, np.nan, X), y)


def test_train_ensemble_on_a_dask_cluster(digits):
    distributed = pytest.importorskip("dask.distributed", reason="dask[distributed] is not installed (the `dask` extra)")
    local = train_ensemble(small_mlp, digits.X_train, digits.y_train, 4, fit_kwargs=dict(epochs=3))
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                  host="127.0.0.1") as cluster, distributed.Client(cluster, timeout="60s") as client:
        with parallel_config(backend="dask", n_jobs=-1), distributed.get_task_stream(client) as tasks:
            remote = train_ensemble(small_mlp, digits.X_train, digits.y_train, 4, fit_kwargs=dict(epochs=3))
        assert len(client.scheduler_info()["workers"]) == 2
        assert len(tasks.data) >= 4  # the members were trained by the cluster's workers
    np.testing.assert_array_equal(remote.predict(digits.X_test), local.predict(digits.X_test))
    np.testing.assert_array_equal(remote.predict_proba(digits.X_test), local.predict_proba(digits.X_test))

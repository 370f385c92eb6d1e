"""`modelopt_nb.stacking`: scikit-learn's estimator checks for `StackingEnsemble`, equality with
`StackingClassifier` on several data sets and settings (nested parameters, `GridSearchCV`,
`sample_weight`, `"drop"`, `transform`, feature names, sparse `X`, multilabel `y`, folds that
lack a class, `verbose`), the `stack_method="auto"` fallbacks, identical results for any `n_jobs`
with torch members, and bad input."""
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import SAMPLE_WEIGHT_CHECKS, SET_PARAMS, RecordsThreads, SeesX
from scipy import sparse
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.datasets import make_multilabel_classification
from sklearn.decomposition import PCA
from sklearn.ensemble import RandomForestClassifier, StackingClassifier
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression, RidgeClassifier
from sklearn.model_selection import GridSearchCV, KFold, StratifiedKFold, cross_val_predict
from sklearn.naive_bayes import GaussianNB
from sklearn.neighbors import KNeighborsClassifier
from sklearn.neural_network import MLPClassifier
from sklearn.svm import LinearSVC
from sklearn.tree import DecisionTreeClassifier
from sklearn.utils.estimator_checks import parametrize_with_checks

from modelopt_nb import core
from modelopt_nb.core import TorchClassifier, load_dataset
from modelopt_nb.stacking import StackingEnsemble, out_of_fold, plot_trust, stack_columns

NO_SAMPLE_WEIGHT = "a member's fit takes no sample_weight: the stack says so before any work"


def expected_failures(estimator) -> dict:
    "The checks not applicable to `estimator`, each with its reason."
    failures = {"check_do_not_raise_errors_in_init_or_set_params": SET_PARAMS}
    named = core.named_estimators(estimator.estimators)
    if any(isinstance(m, KNeighborsClassifier) for _, m in named):
        failures |= dict.fromkeys(SAMPLE_WEIGHT_CHECKS, NO_SAMPLE_WEIGHT)
    return failures


class LabelsOnly(ClassifierMixin, BaseEstimator):
    "A classifier with `predict` only (nearest class mean), to exercise the last `auto` fallback."
    def fit(self, X, y):
        self.classes_ = np.unique(y)
        self.means_ = np.stack([np.asarray(X)[np.asarray(y) == c].mean(axis=0)
                                for c in self.classes_])
        return self

    def predict(self, X):
        return self.classes_[((np.asarray(X)[:, None, :] - self.means_) ** 2).sum(-1).argmin(1)]


def members():
    return [("forest", RandomForestClassifier(20, random_state=0)),
            ("svm", LinearSVC(random_state=0)), ("knn", KNeighborsClassifier(5)),
            ("centroid", LabelsOnly())]


def one_thread(estimator, *args, **kwargs):
    "Fit `estimator` with one BLAS thread, as StackingEnsemble fits its members and meta-model."
    with core.fixed_threads(1):
        return estimator.fit(*args, **kwargs)


@parametrize_with_checks(
    [StackingEnsemble([("tree1", DecisionTreeClassifier(max_depth=3, random_state=0)),
                       ("tree2", DecisionTreeClassifier(max_depth=3, random_state=1))], cv=3)],
    expected_failed_checks=expected_failures)
def test_stacking_ensemble_passes_sklearn_estimator_checks(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. convergence warnings on the checks' tiny data
        check(estimator)


@pytest.mark.slow
@parametrize_with_checks(
    [StackingEnsemble([LinearSVC(random_state=0), KNeighborsClassifier(3)],
                      LogisticRegression(C=10), cv=3, passthrough=True)],
    expected_failed_checks=expected_failures)
def test_passthrough_stack_passes_sklearn_estimator_checks(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. LinearSVC convergence on the checks' tiny data
        check(estimator)


@pytest.fixture(scope="module", params=["wine", "breast_cancer", "digits"])
def data(request):
    "A data set; digits cut to 500 training rows (stratified) to keep the file fast."
    data = load_dataset(request.param)
    if request.param == "digits":
        keep = np.concatenate([np.flatnonzero(data.y_train == c)[:50] for c in range(10)])
        data.X_train, data.y_train = data.X_train[keep], data.y_train[keep]
    return data


@pytest.mark.parametrize("cv, passthrough", [(5, False), (5, True),
                                             (KFold(4, shuffle=True, random_state=7), False)],
                         ids=["cv5", "cv5-passthrough", "shuffled-kfold"])
def test_equals_sklearn_stacking_classifier(data, cv, passthrough):
    final = LogisticRegression(max_iter=3000)
    ours = StackingEnsemble(members(), final, cv=cv, passthrough=passthrough)
    theirs = StackingClassifier(members(), final, cv=cv, passthrough=passthrough)
    ours.fit(data.X_train, data.y_train)
    one_thread(theirs, data.X_train, data.y_train)
    np.testing.assert_array_equal(ours.predict(data.X_test), theirs.predict(data.X_test))
    np.testing.assert_array_equal(ours.predict_proba(data.X_test),
                                  theirs.predict_proba(data.X_test))
    np.testing.assert_array_equal(ours.decision_function(data.X_test),
                                  theirs.decision_function(data.X_test))
    np.testing.assert_array_equal(ours.transform(data.X_test), theirs.transform(data.X_test))
    names = [n.replace("stackingensemble", "stackingclassifier")
             for n in ours.get_feature_names_out()]
    assert names == list(theirs.get_feature_names_out())
    assert ours.stack_method_ == theirs.stack_method_ == ["predict_proba", "decision_function",
                                                          "predict_proba", "predict"]


def test_grid_search_sample_weight_and_drop_equal_sklearn():
    cancer = load_dataset("breast_cancer")
    pair = lambda: [("lr", LogisticRegression()), ("nb", GaussianNB())]  # noqa: E731
    grid = {"lr__C": [0.01, 1.0], "final_estimator__C": [0.1, 1.0]}
    scores = [one_thread(GridSearchCV(stack, grid), cancer.X_train, cancer.y_train)
              .cv_results_["mean_test_score"]
              for stack in (StackingEnsemble(pair(), LogisticRegression()),
                            StackingClassifier(pair(), LogisticRegression(), cv=5))]
    np.testing.assert_array_equal(*scores)
    w = np.random.default_rng(0).uniform(0.1, 3.0, len(cancer.y_train))
    three = lambda: pair() + [("tree", DecisionTreeClassifier(random_state=0))]  # noqa: E731
    fitted = [one_thread(stack.set_params(nb="drop"), cancer.X_train, cancer.y_train,
                         sample_weight=w)
              for stack in (StackingEnsemble(three()), StackingClassifier(three(), cv=5))]
    np.testing.assert_array_equal(*(s.predict_proba(cancer.X_test) for s in fitted))
    assert list(fitted[0].get_feature_names_out()) == ["stackingensemble_lr",
                                                       "stackingensemble_tree"]
    assert fitted[0].named_estimators_["nb"] == "drop"


@pytest.mark.parametrize("passthrough", [False, True])
def test_sparse_X_reaches_members_unchanged_with_sklearn_predictions(passthrough):
    digits = load_dataset("digits")
    X, X_new = sparse.csr_matrix(digits.X_train), sparse.csr_matrix(digits.X_test)
    sparse_members = lambda: [("lr", LogisticRegression(max_iter=300)),  # noqa: E731
                              ("knn", KNeighborsClassifier(3))]
    ours = StackingEnsemble(sparse_members(), passthrough=passthrough).fit(X, digits.y_train)
    theirs = one_thread(StackingClassifier(sparse_members(), cv=5, passthrough=passthrough),
                        X, digits.y_train)
    np.testing.assert_array_equal(ours.predict_proba(X_new), theirs.predict_proba(X_new))
    assert sparse.issparse(ours.transform(X_new)) == passthrough
    probe = StackingEnsemble([SeesX()]).fit(sparse.coo_matrix(X), digits.y_train)
    probe.transform(X_new)
    assert probe.estimators_[0].fitted_on_ is sparse.csr_matrix  # COO rows cannot be indexed
    assert probe.estimators_[0].asked_on_ is sparse.csr_matrix


@pytest.mark.parametrize("member", [RandomForestClassifier(20, random_state=0),
                                    KNeighborsClassifier(), RidgeClassifier(),
                                    MLPClassifier(max_iter=50, random_state=0)],
                         ids=["forest", "knn", "ridge", "mlp"])
def test_multilabel_y_agrees_with_sklearn(member):
    X, Y = make_multilabel_classification(300, n_classes=3, random_state=42)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the MLP's convergence warning
        ours = StackingEnsemble([("m", member)], KNeighborsClassifier()).fit(X[:200], Y[:200])
        theirs = StackingClassifier([("m", member)], KNeighborsClassifier()).fit(X[:200], Y[:200])
    np.testing.assert_array_equal(ours.predict(X[200:]), theirs.predict(X[200:]))
    np.testing.assert_array_equal(ours.transform(X[200:]), theirs.transform(X[200:]))
    # ours: each label's probability of being present; scikit-learn's: of being absent
    np.testing.assert_allclose(ours.predict_proba(X[200:]), 1 - theirs.predict_proba(X[200:]),
                               atol=1e-12)
    assert ours.predict_proba(X[200:]).shape == (100, 3)


def test_folds_that_lack_a_class_are_filled_as_sklearn_does():
    wine = load_dataset("wine")
    order = np.argsort(wine.y_train, kind="stable")  # sorted labels: unshuffled folds lack classes
    X, y = wine.X_train[order], wine.y_train[order]
    pair = lambda: [("lr", LogisticRegression()),  # noqa: E731
                    ("forest", RandomForestClassifier(10, random_state=0))]
    with pytest.warns(RuntimeWarning, match="training fold has 2 of 3 classes"):
        ours = StackingEnsemble(pair(), cv=KFold(3)).fit(X, y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = one_thread(StackingClassifier(pair(), cv=KFold(3)), X, y)
    np.testing.assert_array_equal(ours.predict_proba(wine.X_test),
                                  theirs.predict_proba(wine.X_test))


def test_string_labels_and_torch_members_agree_with_sklearn():
    wine = load_dataset("wine")
    labels = np.array(["barolo", "grignolino", "barbera"])[wine.y_train]
    stack = [("forest", RandomForestClassifier(10, random_state=0)),
             ("mlp", TorchClassifier(epochs=2, batch_size=128, seed=0))]
    ours = StackingEnsemble(stack).fit(wine.X_train, labels)
    theirs = one_thread(StackingClassifier(stack, cv=5), wine.X_train, labels)
    np.testing.assert_array_equal(ours.predict(wine.X_test), theirs.predict(wine.X_test))
    np.testing.assert_allclose(ours.predict_proba(wine.X_test), theirs.predict_proba(wine.X_test),
                               rtol=0, atol=1e-12)
    assert list(ours.classes_) == sorted(set(labels))


def test_results_identical_for_any_n_jobs_with_torch_members():
    wine = load_dataset("wine")
    torch_members = lambda: [("forest", RandomForestClassifier(10, random_state=0)),  # noqa: E731
                             ("mlp", TorchClassifier(epochs=3, seed=0, threads=None))]
    fits = [StackingEnsemble(torch_members(), n_jobs=n).fit(wine.X_train, wine.y_train)
            for n in (None, 2)]
    np.testing.assert_array_equal(*(f.predict_proba(wine.X_test) for f in fits))


def test_threads_none_leaves_threads_alone_when_sequential():
    wine = load_dataset("wine")
    outer = torch.get_num_threads()
    left = StackingEnsemble([RecordsThreads()], threads=None).fit(wine.X_train, wine.y_train)
    fixed = StackingEnsemble([RecordsThreads()], threads=1).fit(wine.X_train, wine.y_train)
    assert left.estimators_[0].threads_ == outer and fixed.estimators_[0].threads_ == 1
    assert torch.get_num_threads() == outer


def test_out_of_fold_is_what_the_meta_model_learns_from():
    cancer = load_dataset("breast_cancer")
    pairs = [("forest", RandomForestClassifier(20, random_state=0)),
             ("knn", KNeighborsClassifier(5))]
    features = out_of_fold(pairs, cancer.X_train, cancer.y_train, cv=5)
    assert features.shape == (len(cancer.X_train), 2)  # binary: one probability column per member
    expected = cross_val_predict(clone(pairs[0][1]), cancer.X_train, cancer.y_train,
                                 cv=StratifiedKFold(5), method="predict_proba")[:, 1]
    np.testing.assert_array_equal(features[:, 0], expected)
    stack = StackingEnsemble(pairs).fit(cancer.X_train, cancer.y_train)
    meta = one_thread(LogisticRegression(), features, cancer.y_train)
    np.testing.assert_array_equal(meta.coef_, stack.final_estimator_.coef_)
    bare = out_of_fold([pair[1] for pair in pairs], cancer.X_train, cancer.y_train)
    np.testing.assert_array_equal(bare, features)
    parallel = out_of_fold(pairs, cancer.X_train, cancer.y_train, n_jobs=2)
    np.testing.assert_array_equal(parallel, features)


def test_final_estimator_methods_are_available_as_the_meta_model_has_them():
    wine = load_dataset("wine")
    two = members()[:2]
    assert hasattr(StackingEnsemble(two, final_estimator=RandomForestClassifier()), "predict_proba")
    linear = StackingEnsemble(two, final_estimator=LinearSVC(random_state=0))
    linear.fit(wine.X_train, wine.y_train)
    assert not hasattr(linear, "predict_proba") and hasattr(linear, "decision_function")
    assert linear.score(wine.X_test, wine.y_test) > 0.8
    assert not hasattr(StackingEnsemble(two, final_estimator=RandomForestClassifier()),
                       "decision_function")


def test_feature_names_with_a_dataframe_and_passthrough():
    wine = load_dataset("wine")
    frame = pd.DataFrame(wine.X_train, columns=[f"f{i}" for i in range(wine.n_features)])
    stack = StackingEnsemble(members()[:2], passthrough=True).fit(frame, wine.y_train)
    names = stack.get_feature_names_out()
    assert list(names[:4]) == ["stackingensemble_forest0", "stackingensemble_forest1",
                               "stackingensemble_forest2", "stackingensemble_svm0"]
    assert list(names[6:]) == list(frame.columns)
    assert len(names) == stack.transform(frame).shape[1]


def test_verbose_prints_a_line_per_fit(capsys):
    wine = load_dataset("wine")
    StackingEnsemble(members()[:2], cv=3, verbose=1).fit(wine.X_train, wine.y_train)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 * (3 + 1) and "(1 of 8) forest" in lines[0]
    assert "svm, fold 3 of 3" in lines[-1]
    StackingEnsemble(members()[:2], cv=3).fit(wine.X_train, wine.y_train)
    assert capsys.readouterr().out == ""


def test_fit_does_not_modify_its_input():
    wine = load_dataset("wine")
    X, y = wine.X_train.copy(), wine.y_train.copy()
    StackingEnsemble(members()).fit(X, y)
    np.testing.assert_array_equal(X, wine.X_train)
    np.testing.assert_array_equal(y, wine.y_train)


def test_cv_larger_than_the_smallest_class_warns_then_fails():
    wine = load_dataset("wine")
    rare = np.r_[np.flatnonzero(wine.y_train != 2), np.flatnonzero(wine.y_train == 2)[:3]]
    with pytest.warns(UserWarning, match="least populated class in y has only 3 members"):
        StackingEnsemble([LogisticRegression()]).fit(wine.X_train[rare], wine.y_train[rare])
    tiny = np.concatenate([np.flatnonzero(wine.y_train == c)[:3] for c in range(3)])
    with pytest.raises(ValueError, match="n_splits=5 cannot be greater than the number of members"):
        StackingEnsemble([LogisticRegression()]).fit(wine.X_train[tiny], wine.y_train[tiny])


def test_stack_columns_lays_out_binary_and_multilabel_predictions():
    p = np.array([[0.2, 0.8], [0.6, 0.4]])
    np.testing.assert_array_equal(stack_columns([p, p], ["predict_proba"] * 2, 2), p[:, [1, 1]])
    np.testing.assert_array_equal(stack_columns([p], ["decision_function"], 2), p)
    np.testing.assert_array_equal(stack_columns([[p, p]], ["predict_proba"], None), p[:, [1, 1]])
    np.testing.assert_array_equal(stack_columns([np.array([0, 2])], ["predict"], 3), [[0], [2]])


X = np.random.default_rng(0).normal(size=(60, 3)).astype(np.float32)
y = np.arange(60) % 3
X_nan = X.copy()
X_nan[5, 0] = np.nan
LOGREG = LogisticRegression()

BAD_INPUT = [
    ("empty estimators", lambda: StackingEnsemble([]).fit(X, y), ValueError,
     "`estimators` is empty"),
    ("all dropped", lambda: StackingEnsemble([("a", "drop")]).fit(X, y), ValueError,
     "every member is 'drop'"),
    ("not a list", lambda: StackingEnsemble(LOGREG).fit(X, y), TypeError,
     "`estimators` must be a list"),
    ("not an estimator", lambda: StackingEnsemble(["logistic"]).fit(X, y), TypeError,
     "scikit-learn style estimators"),
    ("duplicate names", lambda: StackingEnsemble([("a", LOGREG), ("a", LinearSVC())]).fit(X, y),
     ValueError, "names must be unique"),
    ("final not a classifier", lambda: StackingEnsemble([LOGREG], final_estimator=PCA()).fit(X, y),
     TypeError, "`final_estimator` must be"),
    ("member without predictions", lambda: StackingEnsemble([("pca", PCA(2))]).fit(X, y),
     ValueError, "member 'pca' (PCA) has no `predict_proba` / `decision_function` / `predict`"),
    ("explicit method missing",
     lambda: StackingEnsemble([("svm", LinearSVC())], stack_method="predict_proba").fit(X, y),
     ValueError, "member 'svm' (LinearSVC) has no `predict_proba`"),
    ("unknown stack_method", lambda: StackingEnsemble([LOGREG], stack_method="vote").fit(X, y),
     ValueError, "`stack_method` must be 'auto' or one of"),
    ("bad cv", lambda: StackingEnsemble([LOGREG], cv="five").fit(X, y), ValueError, "cv"),
    ("not a partition", lambda: StackingEnsemble([LOGREG], cv=[(np.arange(30), np.arange(30, 50))])
     .fit(X, y), ValueError, "`cv` must partition the rows"),
    ("NaN in X", lambda: StackingEnsemble([LOGREG]).fit(X_nan, y), ValueError, "NaN"),
    ("length mismatch", lambda: StackingEnsemble([LOGREG]).fit(X, y[:-1]), ValueError,
     "inconsistent numbers of samples"),
    ("continuous y", lambda: StackingEnsemble([LOGREG]).fit(X, y + 0.5), ValueError,
     "Unknown label type"),
    ("sample_weight unsupported",
     lambda: StackingEnsemble([("knn", KNeighborsClassifier())]).fit(X, y,
                                                                      sample_weight=np.ones(60)),
     TypeError, "'knn' (KNeighborsClassifier) cannot take `sample_weight`"),
    ("sample_weight length", lambda: StackingEnsemble([LOGREG]).fit(X, y, sample_weight=[1, 2]),
     ValueError, "one finite, non-negative number per row"),
    ("unfitted predict", lambda: StackingEnsemble([LOGREG]).predict(X), NotFittedError,
     "not fitted"),
    ("unfitted predict_proba", lambda: StackingEnsemble([LOGREG]).predict_proba(X), NotFittedError,
     "not fitted"),
    ("unfitted transform", lambda: StackingEnsemble([LOGREG]).transform(X), NotFittedError,
     "not fitted"),
    ("wrong width at predict", lambda: StackingEnsemble([LOGREG]).fit(X, y).predict(X[:, :2]),
     ValueError, "X has 2 features"),
    ("out_of_fold: NaN", lambda: out_of_fold([LOGREG], X_nan, y), ValueError, "`X` contains NaN"),
    ("out_of_fold: lengths", lambda: out_of_fold([LOGREG], X, y[:-1]), ValueError,
     "X has 60 rows, y has shape (59,)"),
    ("out_of_fold: empty", lambda: out_of_fold([], X, y), ValueError, "`estimators` is empty"),
    ("out_of_fold: no method", lambda: out_of_fold([("pca", PCA(2))], X, y), ValueError,
     "member 'pca'"),
    ("plot_trust: unfitted", lambda: plot_trust(StackingEnsemble([LOGREG]), X[:, :2]),
     NotFittedError, "not fitted"),
    ("plot_trust: three features",
     lambda: plot_trust(StackingEnsemble([LOGREG, LinearSVC()]).fit(X, y), X), ValueError,
     "two features and two members"),
]


@pytest.mark.parametrize("call, exc, message", [case[1:] for case in BAD_INPUT],
                         ids=[case[0] for case in BAD_INPUT])
def test_bad_input_fails_early_and_names_the_problem(call, exc, message):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. LinearSVC convergence on random data
        with pytest.raises(exc) as info:
            call()
    assert message in str(info.value), (message, str(info.value))

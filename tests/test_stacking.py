"""`modelopt_nb.stacking`: scikit-learn's estimator checks for `StackingEnsemble`, exact agreement with
`StackingClassifier` on several data sets, the `stack_method="auto"` fallbacks, and bad input."""
import warnings

import numpy as np
import pytest
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.decomposition import PCA
from sklearn.ensemble import RandomForestClassifier, StackingClassifier
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import KFold, StratifiedKFold, cross_val_predict
from sklearn.neighbors import KNeighborsClassifier
from sklearn.svm import LinearSVC
from sklearn.tree import DecisionTreeClassifier
from sklearn.utils.estimator_checks import parametrize_with_checks

from modelopt_nb.core import TorchClassifier, load_dataset
from modelopt_nb.stacking import StackingEnsemble, out_of_fold, plot_trust

EXPECTED_FAILED_CHECKS = {}  # StackingEnsemble passes every check; keep reasons here should one become not applicable


class LabelsOnly(ClassifierMixin, BaseEstimator):
    "A classifier with `predict` only (nearest class mean), to exercise the last `auto` fallback."
    def fit(self, X, y):
        self.classes_ = np.unique(y)
        self.means_ = np.stack([np.asarray(X)[np.asarray(y) == c].mean(axis=0) for c in self.classes_])
        return self

    def predict(self, X):
        return self.classes_[((np.asarray(X)[:, None, :] - self.means_) ** 2).sum(-1).argmin(1)]


def members():
    return [("forest", RandomForestClassifier(20, random_state=0)), ("svm", LinearSVC(random_state=0)),
            ("knn", KNeighborsClassifier(5)), ("centroid", LabelsOnly())]


@parametrize_with_checks(
    [StackingEnsemble([("tree1", DecisionTreeClassifier(max_depth=3, random_state=0)),
                       ("tree2", DecisionTreeClassifier(max_depth=3, random_state=1))]),
     StackingEnsemble([LinearSVC(random_state=0), KNeighborsClassifier(3)], LogisticRegression(C=10), cv=3, passthrough=True)],
    expected_failed_checks=lambda estimator: EXPECTED_FAILED_CHECKS)
def test_stacking_ensemble_passes_sklearn_estimator_checks(estimator, check):
    check(estimator)


@pytest.fixture(scope="module", params=["wine", "breast_cancer", "digits"])
def data(request):
    "A data set; digits cut to 500 training rows (stratified) to keep the file fast."
    data = load_dataset(request.param)
    if request.param == "digits":
        keep = np.concatenate([np.flatnonzero(data.y_train == c)[:50] for c in range(10)])
        data.X_train, data.y_train = data.X_train[keep], data.y_train[keep]
    return data


@pytest.mark.parametrize("cv, passthrough", [(5, False), (5, True), (KFold(4, shuffle=True, random_state=7), False)],
                         ids=["cv5", "cv5-passthrough", "shuffled-kfold"])
def test_equals_sklearn_stacking_classifier(data, cv, passthrough):
    ours = StackingEnsemble(members(), LogisticRegression(max_iter=3000), cv=cv, passthrough=passthrough)
    theirs = StackingClassifier(members(), LogisticRegression(max_iter=3000), cv=cv, passthrough=passthrough)
    ours.fit(data.X_train, data.y_train), theirs.fit(data.X_train, data.y_train)
    np.testing.assert_array_equal(ours.predict(data.X_test), theirs.predict(data.X_test))
    np.testing.assert_array_equal(ours.predict_proba(data.X_test), theirs.predict_proba(data.X_test))
    np.testing.assert_array_equal(ours.meta_features(data.X_test), theirs.transform(data.X_test))
    assert ours.stack_method_ == theirs.stack_method_ == ["predict_proba", "decision_function", "predict_proba", "predict"]


def test_string_labels_and_torch_members_agree_with_sklearn():
    wine = load_dataset("wine")
    labels = np.array(["barolo", "grignolino", "barbera"])[wine.y_train]
    stack = [("forest", RandomForestClassifier(10, random_state=0)), ("mlp", TorchClassifier(epochs=2, batch_size=128, seed=0))]
    ours = StackingEnsemble(stack).fit(wine.X_train, labels)
    theirs = StackingClassifier(stack, cv=5).fit(wine.X_train, labels)
    np.testing.assert_array_equal(ours.predict(wine.X_test), theirs.predict(wine.X_test))
    np.testing.assert_allclose(ours.predict_proba(wine.X_test), theirs.predict_proba(wine.X_test), rtol=0, atol=1e-12)
    assert set(ours.predict(wine.X_test)) <= set(labels) and list(ours.classes_) == sorted(set(labels))


def test_out_of_fold_is_what_the_meta_model_learns_from():
    cancer = load_dataset("breast_cancer")
    pairs = [("forest", RandomForestClassifier(20, random_state=0)), ("knn", KNeighborsClassifier(5))]
    features = out_of_fold(pairs, cancer.X_train, cancer.y_train, cv=5)
    assert features.shape == (len(cancer.X_train), 2)  # binary: one probability column per member
    folds = StratifiedKFold(5)
    expected = cross_val_predict(clone(pairs[0][1]), cancer.X_train, cancer.y_train, cv=folds, method="predict_proba")[:, 1]
    np.testing.assert_array_equal(features[:, 0], expected)
    stack = StackingEnsemble(pairs).fit(cancer.X_train, cancer.y_train)
    np.testing.assert_allclose(LogisticRegression().fit(features, cancer.y_train).coef_, stack.final_estimator_.coef_, atol=1e-10)
    bare = out_of_fold([pair[1] for pair in pairs], cancer.X_train, cancer.y_train)  # bare estimators work too
    np.testing.assert_array_equal(bare, features)


def test_results_identical_for_any_n_jobs():
    wine = load_dataset("wine")
    fits = [StackingEnsemble(members(), n_jobs=n_jobs).fit(wine.X_train, wine.y_train) for n_jobs in (None, 2)]
    np.testing.assert_array_equal(fits[0].predict_proba(wine.X_test), fits[1].predict_proba(wine.X_test))


def test_fit_does_not_modify_its_input():
    wine = load_dataset("wine")
    X, y = wine.X_train.copy(), wine.y_train.copy()
    StackingEnsemble(members()).fit(X, y)
    np.testing.assert_array_equal(X, wine.X_train), np.testing.assert_array_equal(y, wine.y_train)


def test_predict_proba_exists_only_when_the_meta_model_has_it():
    wine = load_dataset("wine")
    stack = StackingEnsemble(members()[:2], final_estimator=LinearSVC(random_state=0)).fit(wine.X_train, wine.y_train)
    assert not hasattr(stack, "predict_proba") and stack.score(wine.X_test, wine.y_test) > 0.8
    assert hasattr(StackingEnsemble(members()[:2]), "predict_proba")


def test_cv_larger_than_the_smallest_class_warns_then_fails():
    wine = load_dataset("wine")
    rare = np.r_[np.flatnonzero(wine.y_train != 2), np.flatnonzero(wine.y_train == 2)[:3]]
    with pytest.warns(UserWarning, match="least populated class in y has only 3 members"):
        StackingEnsemble([LogisticRegression()]).fit(wine.X_train[rare], wine.y_train[rare])
    tiny = np.concatenate([np.flatnonzero(wine.y_train == c)[:3] for c in range(3)])
    with pytest.raises(ValueError, match="n_splits=5 cannot be greater than the number of members in each class"):
        StackingEnsemble([LogisticRegression()]).fit(wine.X_train[tiny], wine.y_train[tiny])


X = np.random.default_rng(0).normal(size=(60, 3)).astype(np.float32)
y = np.arange(60) % 3
X_nan = X.copy()
X_nan[5, 0] = np.nan
LOGREG = LogisticRegression()

BAD_INPUT = [
    ("empty estimators", lambda: StackingEnsemble([]).fit(X, y), ValueError, "`estimators` is empty"),
    ("not a list", lambda: StackingEnsemble(LOGREG).fit(X, y), TypeError, "`estimators` must be a list"),
    ("not an estimator", lambda: StackingEnsemble(["logistic"]).fit(X, y), TypeError, "scikit-learn style estimators"),
    ("duplicate names", lambda: StackingEnsemble([("a", LOGREG), ("a", LinearSVC())]).fit(X, y), ValueError,
     "names must be unique"),
    ("final not a classifier", lambda: StackingEnsemble([LOGREG], final_estimator=PCA()).fit(X, y), TypeError,
     "`final_estimator` must be"),
    ("member without predictions", lambda: StackingEnsemble([("pca", PCA(2))]).fit(X, y), ValueError,
     "member 'pca' (PCA) has no `predict_proba` / `decision_function` / `predict`"),
    ("explicit method missing", lambda: StackingEnsemble([("svm", LinearSVC())], stack_method="predict_proba").fit(X, y),
     ValueError, "member 'svm' (LinearSVC) has no `predict_proba`"),
    ("unknown stack_method", lambda: StackingEnsemble([LOGREG], stack_method="vote").fit(X, y), ValueError,
     "`stack_method` must be 'auto' or one of"),
    ("bad cv", lambda: StackingEnsemble([LOGREG], cv="five").fit(X, y), ValueError, "cv"),
    ("NaN in X", lambda: StackingEnsemble([LOGREG]).fit(X_nan, y), ValueError, "NaN"),
    ("length mismatch", lambda: StackingEnsemble([LOGREG]).fit(X, y[:-1]), ValueError, "inconsistent numbers of samples"),
    ("continuous y", lambda: StackingEnsemble([LOGREG]).fit(X, y + 0.5), ValueError, "Unknown label type"),
    ("unfitted predict", lambda: StackingEnsemble([LOGREG]).predict(X), NotFittedError, "not fitted"),
    ("unfitted predict_proba", lambda: StackingEnsemble([LOGREG]).predict_proba(X), NotFittedError, "not fitted"),
    ("unfitted meta_features", lambda: StackingEnsemble([LOGREG]).meta_features(X), NotFittedError, "not fitted"),
    ("wrong width at predict", lambda: StackingEnsemble([LOGREG]).fit(X, y).predict(X[:, :2]), ValueError,
     "X has 2 features"),
    ("out_of_fold: NaN", lambda: out_of_fold([LOGREG], X_nan, y), ValueError, "`X` contains NaN"),
    ("out_of_fold: lengths", lambda: out_of_fold([LOGREG], X, y[:-1]), ValueError, "X has 60 rows, y has shape (59,)"),
    ("out_of_fold: empty", lambda: out_of_fold([], X, y), ValueError, "`estimators` is empty"),
    ("out_of_fold: no method", lambda: out_of_fold([("pca", PCA(2))], X, y), ValueError, "member 'pca'"),
    ("plot_trust: unfitted", lambda: plot_trust(StackingEnsemble([LOGREG]), X[:, :2]), NotFittedError, "not fitted"),
    ("plot_trust: three features", lambda: plot_trust(StackingEnsemble([LOGREG, LinearSVC()]).fit(X, y), X), ValueError,
     "two features and two members"),
]


@pytest.mark.parametrize("call, exc, message", [case[1:] for case in BAD_INPUT], ids=[case[0] for case in BAD_INPUT])
def test_bad_input_fails_early_and_names_the_problem(call, exc, message):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. LinearSVC convergence on random data: not what is tested here
        with pytest.raises(exc, match=message.replace("`", "\\`").replace("(", "\\(").replace(")", "\\)")):
            call()

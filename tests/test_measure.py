"""`modelopt_nb.measure`: its statistics against SciPy on many inputs, `compare`'s table and its
independence of `n_jobs`, the one timing path, parameter counting, and bad input."""

import math
import re

import numpy as np
import pytest
import torch
from scipy import stats
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.ensemble import VotingClassifier
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier

from modelopt_nb.core import TorchClassifier, fit, load_dataset, mlp
from modelopt_nb.measure import (
    Comparison,
    Timing,
    accuracy,
    accuracy_ci,
    compare,
    count_params,
    latency,
    latency_table,
    log_loss,
    macs,
    mcnemar,
    model_size,
    paired_difference,
    pareto_front,
    smallest_resolvable,
    verdict,
    wilson_interval,
)

X = np.random.default_rng(0).normal(size=(40, 4)).astype(np.float32)
y = np.arange(40) % 2
X_nan = X.copy()
X_nan[3, 1] = np.nan
labels = np.arange(10) % 2


@pytest.fixture(scope="module")
def net():
    return fit(mlp([4, 8, 2], seed=0), X, y, epochs=2)


@pytest.fixture(scope="module")
def logreg():
    return LogisticRegression().fit(X, y)


def tiny_method(data, seed):
    return fit(
        mlp([data.n_features, 8, data.n_classes], seed=seed),
        data.X_train,
        data.y_train,
        epochs=2,
        seed=seed,
    )


METHODS = {"a": tiny_method, "b": tiny_method}
DIGITS = load_dataset("digits")

BAD_INPUT = [
    (
        "accuracy: lengths",
        lambda: accuracy(mlp([4, 2]), X, y[:-1]),
        ValueError,
        "X has 40 rows, y has 39 labels",
    ),
    (
        "log_loss: lengths",
        lambda: log_loss(mlp([4, 2]), X, y[:-1]),
        ValueError,
        "X has 40 rows, y has 39 labels",
    ),
    (
        "accuracy_ci: lengths",
        lambda: accuracy_ci(labels, labels[:5]),
        ValueError,
        "differ in length",
    ),
    ("accuracy_ci: level 1", lambda: accuracy_ci(labels, labels, level=1.0), ValueError, "`level`"),
    ("accuracy_ci: level 0", lambda: accuracy_ci(labels, labels, level=0), ValueError, "`level`"),
    ("accuracy_ci: empty", lambda: accuracy_ci([], []), ValueError, "non-empty 1-D"),
    ("wilson_interval: k > n", lambda: wilson_interval(11, 10), ValueError, "`k`"),
    (
        "mcnemar: lengths",
        lambda: mcnemar(labels, labels, labels[:3]),
        ValueError,
        "differ in length",
    ),
    (
        "mcnemar: 2-D",
        lambda: mcnemar(labels[:, None], labels, labels),
        ValueError,
        "`y` must be a non-empty 1-D",
    ),
    (
        "paired_difference: one pair",
        lambda: paired_difference([1.0], [0.5]),
        ValueError,
        "at least 2 pairs",
    ),
    (
        "paired_difference: shapes",
        lambda: paired_difference([1.0, 2.0], [1.0]),
        ValueError,
        "`a` and `b`",
    ),
    (
        "paired_difference: level",
        lambda: paired_difference([1, 2], [1, 3], level=1.5),
        ValueError,
        "`level`",
    ),
    (
        "compare: empty methods",
        lambda: compare({}, DIGITS, baseline="a"),
        ValueError,
        "`methods` must be a non-empty",
    ),
    (
        "compare: not callable",
        lambda: compare({"a": 1}, DIGITS, baseline="a"),
        TypeError,
        "callables",
    ),
    (
        "compare: unknown baseline",
        lambda: compare(METHODS, DIGITS, baseline="c"),
        ValueError,
        "`baseline` 'c'",
    ),
    (
        "compare: one seed",
        lambda: compare(METHODS, DIGITS, baseline="a", seeds=[0]),
        ValueError,
        "`seeds`",
    ),
    (
        "compare: repeated seeds",
        lambda: compare(METHODS, DIGITS, baseline="a", seeds=[1, 1]),
        ValueError,
        "`seeds`",
    ),
    (
        "compare: unknown metric",
        lambda: compare(METHODS, DIGITS, baseline="a", metric="f1"),
        ValueError,
        "`metric`",
    ),
    (
        "compare: custom metric needs a direction",
        lambda: compare(METHODS, DIGITS, baseline="a", metric="m", metrics={"m": lambda m, d: 0.0}),
        ValueError,
        "`greater_is_better`",
    ),
    (
        "compare: level",
        lambda: compare(METHODS, DIGITS, baseline="a", level=0),
        ValueError,
        "`level`",
    ),
    (
        "count_params: unfitted",
        lambda: count_params(LogisticRegression()),
        NotFittedError,
        "not fitted",
    ),
    (
        "count_params: unknown model",
        lambda: count_params(KNeighborsClassifier(3).fit(X, y)),
        TypeError,
        "KNeighborsClassifier",
    ),
    (
        "macs: sklearn model",
        lambda: macs(LogisticRegression(), (4,)),
        TypeError,
        "`model` must be a torch nn.Module",
    ),
    ("latency: unfitted", lambda: latency(LogisticRegression(), X), NotFittedError, "not fitted"),
    (
        "latency: few repeats",
        lambda: latency(mlp([4, 2]), X, repeats=6),
        ValueError,
        "`repeats` must be an integer >= 7",
    ),
    ("latency: warmup", lambda: latency(mlp([4, 2]), X, warmup=-1), ValueError, "`warmup`"),
    (
        "latency: batch too large",
        lambda: latency(mlp([4, 2]), X, batch_size=41),
        ValueError,
        "`batch_size` (41)",
    ),
    ("latency: NaN", lambda: latency(mlp([4, 2]), X_nan), ValueError, "`X` contains NaN"),
    ("latency_table: no models", lambda: latency_table({}, X), ValueError, "`models`"),
    (
        "latency_table: batch too large",
        lambda: latency_table({"m": mlp([4, 2])}, X, (64,)),
        ValueError,
        "`batch_size`",
    ),
    ("pareto_front: lengths", lambda: pareto_front([1, 2], [1]), ValueError, "differ in length"),
    (
        "pareto_front: reversed interval",
        lambda: pareto_front([(2, 1)], [1]),
        ValueError,
        "low <= high",
    ),
]


@pytest.mark.parametrize(
    "call, exc, message", [case[1:] for case in BAD_INPUT], ids=[case[0] for case in BAD_INPUT]
)
def test_bad_input_fails_early_and_names_the_argument(call, exc, message):
    with pytest.raises(exc, match=re.escape(message)):
        call()


@pytest.mark.parametrize("fn", [accuracy, log_loss])
@pytest.mark.parametrize("model_name", ["net", "logreg"])
def test_metrics_reject_nan_for_torch_and_sklearn(fn, model_name, request):
    with pytest.raises(ValueError, match="`X` contains NaN"):
        fn(request.getfixturevalue(model_name), X_nan, y)


def test_log_loss_rejects_unknown_labels(logreg):
    with pytest.raises(ValueError, match="outside the model's classes"):
        log_loss(logreg, X, y + 5)


def test_mcnemar_equals_scipy_exact_binomial_on_many_counts():
    rng = np.random.default_rng(1)
    counts = [
        (0, 0),
        (1, 0),
        (0, 7),
        (10, 10),
        (1, 40),
        *rng.integers(0, 400, size=(300, 2)),
        (4000, 3800),
    ]
    for b, c in counts:
        y_true = np.zeros(b + c + 2, dtype=int)
        both_right, both_wrong = [0], [1]
        pred_a = np.r_[np.zeros(b), np.ones(c), both_right, both_wrong]
        pred_b = np.r_[np.ones(b), np.zeros(c), both_right, both_wrong]
        expected = stats.binomtest(b, b + c, 0.5).pvalue if b + c else 1.0
        assert mcnemar(y_true, pred_a, pred_b) == pytest.approx(expected, rel=1e-10, abs=1e-300)


@pytest.mark.parametrize("level", [0.5, 0.9, 0.95, 0.99])
def test_wilson_interval_equals_scipy(level):
    for n in (1, 2, 7, 50, 1250, 10_000):
        for k in sorted({0, 1, n // 3, n // 2, n - 1, n}):
            if not 0 <= k <= n:
                continue
            ci = stats.binomtest(k, n).proportion_ci(level, method="wilson")
            assert wilson_interval(k, n, level) == pytest.approx((ci.low, ci.high), abs=1e-12)


def test_accuracy_ci_is_wilson_of_the_hits():
    rng = np.random.default_rng(2)
    y_true = rng.integers(0, 3, 500)
    pred = np.where(rng.random(500) < 0.8, y_true, (y_true + 1) % 3)
    assert accuracy_ci(y_true, pred) == wilson_interval(int((y_true == pred).sum()), 500)


def test_paired_difference_equals_scipy_ttest_rel():
    rng = np.random.default_rng(3)
    for n in (2, 3, 5, 10):
        a, b = rng.normal(0.9, 0.02, n), rng.normal(0.89, 0.02, n)
        for level in (0.8, 0.95):
            d = paired_difference(a, b, level)
            ci = stats.ttest_rel(a, b).confidence_interval(level)
            assert (d.low, d.high) == pytest.approx((ci.low, ci.high), abs=1e-12)
            assert d.sd == pytest.approx(np.std(a - b, ddof=1)) and d.n == n


def test_verdict_follows_the_interval_and_the_direction():
    assert verdict(0.001, 0.02) == "better" and verdict(-0.02, -0.001) == "worse"
    assert (
        verdict(-0.01, 0.01) == "no resolved difference"
        and verdict(0.0, 0.0) == "no resolved difference"
    )
    assert verdict(-0.02, -0.001, greater_is_better=False) == "better"


def test_smallest_resolvable_shrinks_with_the_test_set():
    small, large = smallest_resolvable(1250, 0.06), smallest_resolvable(10_000, 0.06)
    assert 0 < large < small and small / large == pytest.approx(math.sqrt(8), rel=0.25)


@pytest.fixture(scope="module")
def comparison():
    methods = {
        "small": tiny_method,
        "wider": lambda d, s: fit(
            mlp([64, 64, 10], seed=s), d.X_train, d.y_train, epochs=2, seed=s
        ),
    }
    return methods, compare(methods, DIGITS, seeds=[0, 1, 2], baseline="small", n_jobs=2)


def test_compare_returns_a_row_per_run_and_a_verdict_per_method(comparison):
    _, result = comparison
    assert isinstance(result, Comparison)
    assert sorted(zip(result.runs["method"], result.runs["seed"])) == [
        (m, s) for m in ("small", "wider") for s in (0, 1, 2)
    ]
    assert set(result.runs.columns) == {"method", "seed", "accuracy", "log_loss", "train_s"}
    assert result.summary.loc["small", "verdict"] == "baseline"
    assert set(result.verdicts) == {"wider"} and result.verdicts["wider"] in (
        "better",
        "worse",
        "no resolved difference",
    )
    per_seed = result.runs.pivot(index="seed", columns="method", values="accuracy")
    d = paired_difference(per_seed["wider"], per_seed["small"])
    row = result.summary.loc["wider"]
    assert (row["Δ accuracy"], row["low"], row["high"]) == pytest.approx((d.mean, d.low, d.high))
    assert row["accuracy sd"] == pytest.approx(per_seed["wider"].std(ddof=1))
    assert "train_s" not in result._repr_markdown_() and "wider" in result._repr_markdown_()


def test_compare_gives_the_same_numbers_for_any_n_jobs(comparison):
    methods, parallel = comparison
    serial = compare(methods, DIGITS, seeds=[0, 1, 2], baseline="small", n_jobs=1)
    ordered = [
        r.runs.sort_values(["method", "seed"], ignore_index=True) for r in (serial, parallel)
    ]
    np.testing.assert_array_equal(
        ordered[0][["accuracy", "log_loss"]], ordered[1][["accuracy", "log_loss"]]
    )


def test_compare_with_a_custom_metric_and_direction():
    metrics = {"error": lambda model, data: 1 - accuracy(model, data.X_test, data.y_test)}
    result = compare(
        METHODS,
        DIGITS,
        seeds=[0, 1],
        baseline="a",
        metric="error",
        metrics=metrics,
        greater_is_better=False,
    )
    assert result.verdicts == {
        "b": "no resolved difference"
    }  # the same recipe twice: identical runs
    assert result.summary.loc["b", "Δ error"] == 0.0


def test_latency_times_the_public_path_and_records_where(net, logreg):
    for model in (net, logreg):
        timing = latency(model, X, batch_size=16, repeats=7, warmup=1)
        assert isinstance(timing, Timing) and timing.batch_size == 16 and timing.repeats == 7
        assert (
            0 < timing.q1 <= timing.median <= timing.q3
            and timing.iqr >= 0
            and float(timing) == timing.median
        )
        assert set(timing.environment) == {"device", "threads", "torch", "cpu"}
        assert (
            timing.environment["threads"] == 1 and timing.environment["torch"] == torch.__version__
        )


def test_latency_table_interleaves_and_gives_paired_ratios(net, logreg):
    table = latency_table(
        {"net": net, "logreg": logreg}, X, batch_sizes=(32, 1), repeats=7, warmup=1
    )
    assert list(table.index) == ["net", "logreg"]
    for b in (32, 1):
        assert (
            table.loc["net", f"batch {b} vs first"] == 1.0
            and table.loc["net", f"batch {b} vs first IQR"] == 0.0
        )
        assert (table[f"batch {b} (ms)"] > 0).all() and (table[f"batch {b} IQR (ms)"] >= 0).all()
    assert table.attrs["environment"]["threads"] == 1


def test_measuring_modifies_nothing(net):
    X_copy, state = X.copy(), {k: v.clone() for k, v in net.state_dict().items()}
    accuracy(net, X, y), log_loss(net, X, y), latency(net, X, repeats=7, warmup=0), macs(net, (4,))
    count_params(net), model_size(net)
    np.testing.assert_array_equal(X, X_copy)
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in state.items())
    assert not net.training


def test_pareto_front_with_plain_numbers_is_the_classic_front():
    rng = np.random.default_rng(4)
    for _ in range(50):
        score, cost = rng.integers(0, 6, 12).astype(float), rng.integers(0, 6, 12).astype(float)
        classic = [
            not any(
                score[j] >= score[i]
                and cost[j] <= cost[i]
                and (score[j] > score[i] or cost[j] < cost[i])
                for j in range(12)
            )
            for i in range(12)
        ]
        assert pareto_front(score, cost).tolist() == classic


def test_pareto_front_treats_overlapping_intervals_as_ties():
    accuracy_ = [(0.90, 0.91), (0.905, 0.915), (0.90, 0.91)]
    cost = [(1.0, 1.2), (1.1, 1.3), (2.0, 2.2)]
    # 0 and 1 tie on both axes: both stay; 2 ties 0 on accuracy and is resolved slower: off
    assert pareto_front(accuracy_, cost).tolist() == [True, True, False]


def test_count_params_sums_ensemble_members_torch_and_sklearn():
    class Holder(ClassifierMixin, BaseEstimator):
        "A fitted meta-estimator whose members are plain torch modules."

        def fit(self, X, y):
            self.estimators_ = [mlp([4, 3, 2], seed=0), mlp([4, 2], seed=1)]
            return self

    assert count_params(Holder().fit(X, y)) == (4 * 3 + 3 + 3 * 2 + 2) + (4 * 2 + 2)
    vote = VotingClassifier([("net", TorchClassifier(epochs=1)), ("lr", LogisticRegression())]).fit(
        X, y
    )
    assert count_params(vote) == (4 * 64 + 64 + 64 * 2 + 2) + (4 + 1)


def test_model_size_of_a_classifier_with_a_lambda_factory():
    clf = TorchClassifier(
        lambda n_features, n_classes: mlp([n_features, 8, n_classes]), epochs=1
    ).fit(X, y)
    assert model_size(clf) > model_size(clf.module_) > 0

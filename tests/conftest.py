"""Shared fixtures and helpers: the repository's paths; a headless Chromium driven by Playwright,
kept offline; the table of the rendered docs site that tests/test_docs.py leaves for the summary;
and what tests/test_ensembles.py and tests/test_stacking.py share (check failures, classifiers)."""
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.base import BaseEstimator, ClassifierMixin

ROOT = Path(__file__).resolve().parents[1]
NBS = ROOT / "nbs"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# Chromium talks to Google's services on its own (updates, safe browsing, metrics, sync): not here.
# Names other than loopback do not resolve at all, so a request that a test fails to intercept
# still cannot leave the machine.
OFFLINE_ARGS = [
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-default-apps",
    "--disable-domain-reliability",
    "--disable-sync",
    "--metrics-recording-only",
    "--no-first-run",
    "--no-pings",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1",
]
# scikit-learn estimator checks that VotingEnsemble and StackingEnsemble are expected to fail, and
# why: shared by tests/test_ensembles.py and tests/test_stacking.py.
SET_PARAMS = ("core.MembersMixin.set_params validates `estimators` at once (scikit-learn leaves "
              "that to fit); reported for core")
SAMPLE_WEIGHT_CHECKS = ["check_sample_weights_pandas_series", "check_sample_weights_not_an_array",
                        "check_sample_weights_list", "check_all_zero_sample_weights_error",
                        "check_sample_weights_shape", "check_sample_weights_not_overwritten",
                        "check_sample_weight_equivalence_on_dense_data",
                        "check_sample_weight_equivalence_on_sparse_data",
                        "check_classifiers_one_label_sample_weights"]


class SeesX(ClassifierMixin, BaseEstimator):
    "A classifier that records the type of X it is fitted and asked on (and predicts the prior)."
    def fit(self, X, y):
        self.classes_, counts = np.unique(y, return_counts=True)
        self.prior_, self.fitted_on_ = counts / counts.sum(), type(X)
        return self

    def predict_proba(self, X):
        self.asked_on_ = type(X)
        return np.tile(self.prior_, (X.shape[0], 1))

    def predict(self, X):
        return self.classes_[self.predict_proba(X).argmax(axis=1)]


class RecordsThreads(ClassifierMixin, BaseEstimator):
    "A classifier that records torch's thread count while it is fitted (and predicts uniformly)."
    def fit(self, X, y):
        self.classes_, self.threads_ = np.unique(y), torch.get_num_threads()
        return self

    def predict_proba(self, X):
        return np.full((len(X), len(self.classes_)), 1 / len(self.classes_))

    def predict(self, X):
        return self.classes_[np.zeros(len(X), dtype=int)]


SITE_REPORT = pytest.StashKey[dict]()  # test_docs.py: {"rows": [...], "screenshots": Path}


@pytest.fixture(scope="session")
def browser():
    "A headless, offline Chromium (Debian's package); skips with the reason when it is missing."
    if not Path(CHROMIUM).exists():
        pytest.skip("chromium is not installed (apt-get install chromium; .ci/setup does this)")
    sync_api = pytest.importorskip("playwright.sync_api",
                                   reason="playwright is not installed (pip install -e '.[dev]')")
    sandbox = ["--no-sandbox"] if os.geteuid() == 0 else []  # the sandbox refuses to run as root
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=sandbox + OFFLINE_ARGS)
        yield browser
        browser.close()


def pytest_terminal_summary(terminalreporter, config):
    "After a run that rendered the docs site: one line per page, and where the screenshots are."
    report = config.stash.get(SITE_REPORT, None)
    if not report:
        return
    terminalreporter.section("docs site")
    for line in report["table"]:
        terminalreporter.write_line(line)
    terminalreporter.write_line(f"full-page screenshots: {report['screenshots']}")

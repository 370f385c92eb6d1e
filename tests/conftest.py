"""Shared fixtures: the repository's paths and a headless Chromium driven by Playwright, kept
offline; and the table of the rendered docs site that tests/test_docs.py leaves for the summary."""
import os
import shutil
from pathlib import Path

import pytest

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

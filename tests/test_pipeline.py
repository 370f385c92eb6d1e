"""The `modelopt_nb_report` command as a user runs it: the default run's table and results.json agree, and bad
arguments fail with a usage message, exit code 2 and nothing written."""
import json
import shutil
import subprocess

import pytest


def run(*args, cwd):
    "The installed console command (settings.ini's console_scripts), as a user types it."
    command = shutil.which("modelopt_nb_report")
    assert command, "modelopt_nb_report is not installed: pip install -e ."
    return subprocess.run([command, *args], cwd=cwd, capture_output=True, text=True, timeout=600)


def parse_table(stdout: str) -> list:
    "The rows of the markdown table printed on stdout, as dicts of strings keyed by the header."
    lines = [line for line in stdout.splitlines() if line.startswith("|")]
    header = [h.strip() for h in lines[0].strip("|").split("|")]
    return [dict(zip(header, (c.strip() for c in line.strip("|").split("|")))) for line in lines[2:]]


@pytest.fixture(scope="module")
def default_run(tmp_path_factory):
    "One run of the command on the default data set (digits), written to a fresh folder."
    cwd = tmp_path_factory.mktemp("report")
    result = run("--out", "report", cwd=cwd)
    assert result.returncode == 0, result.stderr[-3000:]
    return result, cwd / "report"


def test_default_run_prints_a_row_per_method(default_run):
    result, _ = default_run
    methods = [row["method"] for row in parse_table(result.stdout)]
    for expected in ["dense", "pruned (unstructured)", "pruned (structured)", "distilled", "voting", "stacking"]:
        assert expected in methods
    assert "modelopt_nb_report:" in result.stderr  # progress goes to stderr, the table alone to stdout
    assert "modelopt_nb_report:" not in result.stdout


def test_results_json_equals_the_printed_table(default_run):
    result, out = default_run
    saved = json.loads((out / "results.json").read_text())
    assert saved["dataset"] == "digits" and saved["seed"] == 0
    table = parse_table(result.stdout)
    assert [r["method"] for r in table] == [r["method"] for r in saved["rows"]]
    for printed, stored in zip(table, saved["rows"]):
        assert float(printed["accuracy"]) == stored["accuracy"]
        assert float(printed["log loss"]) == stored["log_loss"]
        assert int(printed["parameters"].replace(",", "")) == stored["parameters"]
        assert int(printed["nonzero"].replace(",", "")) == stored["nonzero"]
        assert int(printed["bytes"].replace(",", "")) == stored["bytes"]
        assert float(printed["latency (ms, batch 256)"]) == stored["latency_ms"]
        assert float(printed["latency vs dense"]) == stored["latency_ratio"]
        assert float(printed["train (s)"]) == stored["train_s"]


def test_default_run_writes_the_plots(default_run):
    _, out = default_run
    assert sorted(p.name for p in out.iterdir()) == ["pareto_latency.png", "pareto_size.png", "results.json"]
    for png in ("pareto_latency.png", "pareto_size.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_structure_of_the_results(default_run):
    _, out = default_run
    rows = {r["method"]: r for r in json.loads((out / "results.json").read_text())["rows"]}
    assert rows["pruned (structured)"]["parameters"] < rows["dense"]["parameters"]
    assert rows["pruned (unstructured)"]["nonzero"] < rows["dense"]["nonzero"]
    assert rows["distilled"]["parameters"] < rows["dense"]["parameters"] < rows["voting"]["parameters"]
    assert rows["dense"]["latency_ratio"] == 1.0


@pytest.mark.parametrize("args, message", [
    (["--dataset", "cifar10"], "unknown dataset 'cifar10'; valid names: digits, mnist, fashion_mnist, breast_cancer, wine"),
    (["--out", "a_file.txt"], "is a file"),
    (["--seed", "abc"], "invalid int value"),
    (["--bogus"], "unrecognized arguments"),
])
def test_bad_arguments_exit_2_and_write_nothing(tmp_path, args, message):
    (tmp_path / "a_file.txt").write_text("not a folder")
    result = run(*args, cwd=tmp_path)
    assert result.returncode == 2
    assert message in result.stderr and "usage:" in result.stderr
    assert result.stdout == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file.txt"]  # no report folder, nothing half-written

"""The `modelopt_nb_report` command as a user runs it: the table it prints and results.json agree,
a second data set and several seeds work, two runs in two processes agree, and bad arguments fail at
once with a usage message, exit status 2 and nothing written."""
import json
import shutil
import subprocess
import time

import pytest

from modelopt_nb.cli import USAGE
from modelopt_nb.pipeline import ACCURACY, RIVALS, markdown_table, report

NUMBERS = ["accuracy", "log loss", "weights", "nonzero", "tree nodes", "bytes"]
KEYS = {"accuracy": "accuracy", "log loss": "log_loss", "weights": "weights", "nonzero": "nonzero",
        "tree nodes": "tree_nodes", "bytes": "bytes"}


def run(*args, cwd):
    "The installed console command (settings.ini's console_scripts), as a user types it."
    command = shutil.which("modelopt_nb_report")
    assert command, "modelopt_nb_report is not installed: pip install -e ."
    return subprocess.run([command, *args], cwd=cwd, capture_output=True, text=True, timeout=600)


def parse_table(stdout: str) -> list:
    "The rows of the Markdown table printed on stdout, as dicts of strings keyed by the header."
    lines = [line for line in stdout.splitlines() if line.startswith("|")]
    header = [h.strip() for h in lines[0].strip("|").split("|")]
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in lines[2:]]
    return [dict(zip(header, row)) for row in cells]


def as_number(text: str):
    return float(text.replace(",", "")) if text else None


@pytest.fixture(scope="module")
def default_run(tmp_path_factory):
    "One run of the command on the default data set (digits, one seed), written to a fresh folder."
    cwd = tmp_path_factory.mktemp("report")
    result = run("--out", "report", cwd=cwd)
    assert result.returncode == 0, result.stderr[-3000:]
    return result, cwd


def test_default_run_prints_a_row_per_method(default_run):
    result, _ = default_run
    methods = [row["method"] for row in parse_table(result.stdout)]
    assert methods == ["dense", "dense, longer", "pruned, unstructured", "pruned, structured",
                       "structured + labels", "voting", "distilled", "stacking"]
    assert "modelopt_nb_report: measuring" in result.stderr  # progress on stderr, measuring too
    assert "modelopt_nb_report:" not in result.stdout


def test_results_json_equals_the_printed_table(default_run):
    result, cwd = default_run
    saved = json.loads((cwd / "report" / "results.json").read_text())
    assert saved["dataset"] == "digits" and saved["seeds"] == [0]
    assert saved["environment"]["threads"] == 1 and saved["environment"]["device"] == "cpu"
    table = parse_table(result.stdout)
    assert [r["method"] for r in table] == [r["method"] for r in saved["rows"]]
    for printed, stored in zip(table, saved["rows"]):
        for column in NUMBERS:
            assert as_number(printed[column]) == stored[KEYS[column]], column
        assert printed["verdict"] == stored["verdict"] == "(one run)"


def test_default_run_writes_the_plot_and_counts_trees_apart(default_run):
    _, cwd = default_run
    out = cwd / "report"
    assert sorted(p.name for p in out.iterdir()) == ["pareto_latency.png", "results.json"]
    assert (out / "pareto_latency.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = {r["method"]: r for r in json.loads((out / "results.json").read_text())["rows"]}
    assert rows["pruned, structured"]["weights"] < rows["dense"]["weights"]
    assert rows["pruned, unstructured"]["nonzero"] < rows["dense"]["nonzero"]
    assert rows["stacking"]["tree_nodes"] > 0 and rows["voting"]["tree_nodes"] == 0


def test_an_existing_report_needs_force(default_run):
    _, cwd = default_run
    start = time.perf_counter()
    refused = run("--out", "report", cwd=cwd)
    assert refused.returncode == 2 and "--force" in refused.stderr
    assert time.perf_counter() - start < 10


def test_two_seeds_on_another_data_set_give_verdicts_and_repeat_exactly(tmp_path):
    "Two processes, the same arguments: the same accuracies and verdicts (threads and seeds fixed)."
    args = ["--dataset", "wine", "--seeds", "2", "--out"]
    runs = [run(*args, f"r{i}", cwd=tmp_path) for i in (0, 1)]
    assert all(r.returncode == 0 for r in runs), runs[0].stderr[-2000:]
    saved = [json.loads((tmp_path / f"r{i}" / "results.json").read_text())["rows"] for i in (0, 1)]
    fields = ["accuracy", "accuracy_sd", "delta", "low", "high", "verdict", "delta_rival",
              "verdict_rival", "log_loss", "weights"]
    assert [[r[f] for f in fields] for r in saved[0]] == [[r[f] for f in fields] for r in saved[1]]
    verdicts = {r["method"]: r["verdict"] for r in saved[0]}
    assert verdicts["dense"] == "baseline"
    assert set(verdicts.values()) <= {"baseline", "better", "worse", "no resolved difference"}
    assert all(r["accuracy_sd"] is not None for r in saved[0])
    rivals = {r["method"]: (r["rival"], r["verdict_rival"]) for r in saved[0] if r["rival"]}
    assert {m: rival for m, (rival, _) in rivals.items()} == RIVALS
    assert {v for _, v in rivals.values()} <= {"better", "worse", "no resolved difference"}


def test_report_returns_rows_and_prints_nothing(capsys):
    rows = report("wine")
    assert len(rows) == 8 and capsys.readouterr().out == ""


def test_markdown_table_shows_chosen_columns_and_refuses_unknown_ones():
    rows = report("wine")
    header = markdown_table(rows, ACCURACY).splitlines()[0]
    assert header.startswith("| method | accuracy | sd | Δ vs dense |") and "bytes" not in header
    assert len(markdown_table(rows).splitlines()) == 2 + len(rows)
    with pytest.raises(ValueError, match="unknown columns \\['speed'\\]"):
        markdown_table(rows, ["method", "speed"])


def test_help_answers_at_once(tmp_path):
    start = time.perf_counter()
    helped = run("--help", cwd=tmp_path)
    assert helped.returncode == 0 and "--dataset" in helped.stdout
    usage = " ".join(helped.stdout.split("\n\n")[0].split())  # argparse wraps to the terminal
    assert usage == USAGE  # errors print the same usage line as --help
    assert time.perf_counter() - start < 2


@pytest.mark.parametrize("args, message", [
    (["--dataset", "cifar10"], "unknown dataset 'cifar10'; valid names: digits, mnist"),
    (["--out", "a_file.txt"], "--out 'a_file.txt' is a file"),
    (["--out", "a_file.txt/sub"], "lies under 'a_file.txt', a file"),
    (["--seeds", "0"], "--seeds must be at least 1"),
    (["--seed", "abc"], "invalid int value"),
    (["--bogus"], "unrecognized arguments"),
])
def test_bad_arguments_exit_2_at_once_and_write_nothing(tmp_path, args, message):
    (tmp_path / "a_file.txt").write_text("not a folder")
    start = time.perf_counter()
    result = run(*args, cwd=tmp_path)
    assert result.returncode == 2
    assert message in result.stderr and "usage:" in result.stderr
    assert result.stdout == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file.txt"]  # nothing half-written
    assert time.perf_counter() - start < 10

"""Rerunning a notebook in a real Jupyter kernel, as a reader does in JupyterLab or with
`jupyter execute`, reproduces the outputs saved in it, and leaves no progress-bar residue.

Cells whose outputs are timings say so in a comment (`# timing: ...`) and are left out of the
comparison; images are left out too (the docs tests check that they render)."""

import json
import re
import subprocess
import sys

import pytest
from conftest import NBS

TIMING = "# timing:"


def text_outputs(cell: dict) -> list[str]:
    "The text a code cell shows: streams, and the plain-text and Markdown forms of its results."
    texts = []
    for output in cell.get("outputs", []):
        if output["output_type"] == "stream":
            texts.append("".join(output["text"]))
        for kind in ("text/plain", "text/markdown"):
            if kind in output.get("data", {}) and "image/png" not in output["data"]:
                texts.append("".join(output["data"][kind]))
    return texts


def executed(path, tmp_path):
    "The notebook at `path` run top to bottom in a fresh python3 kernel (all cells, slow ones too)."
    nbclient = pytest.importorskip(
        "nbclient", reason="nbclient is not installed (it comes with JupyterLab)"
    )
    nbformat = pytest.importorskip("nbformat")
    nb = nbformat.read(path, as_version=4)
    nbclient.NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(NBS)}}
    ).execute()
    return json.loads(nbformat.writes(nb))


def compare_with_saved(name, tmp_path):
    saved = json.loads((NBS / name).read_text())
    rerun = executed(NBS / name, tmp_path)
    code = [(a, b) for a, b in zip(saved["cells"], rerun["cells"]) if a["cell_type"] == "code"]
    assert len(code) == sum(c["cell_type"] == "code" for c in rerun["cells"])
    differing = []
    for old, new in code:
        source = "".join(old["source"])
        residue = [t for t in text_outputs(new) if re.search(r"\r|\d+/\d+ \[", t)]
        assert not residue, f"progress-bar residue in the output of:\n{source}\n{residue}"
        if TIMING not in source and text_outputs(old) != text_outputs(new):
            differing.append(
                f"{source[:200]}\n  saved: {text_outputs(old)}\n  rerun: {text_outputs(new)}"
            )
    assert not differing, (
        f"{len(differing)} cells of {name} print something else when rerun:\n"
        + "\n".join(differing)
    )


def test_core_reruns_to_its_saved_outputs(tmp_path):
    compare_with_saved("00_core.ipynb", tmp_path)


@pytest.mark.slow
def test_measure_reruns_to_its_saved_outputs(tmp_path):
    compare_with_saved("01_measure.ipynb", tmp_path)


def test_gpu_smoke_script_runs_on_the_cpu():
    "The GPU smoke script runs on the CPU here; without CUDA its default says so and exits 0."
    script = NBS.parent / "benchmarks" / "gpu_smoke.py"
    run = subprocess.run(
        [sys.executable, str(script), "--device", "cpu"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "all checks passed on cpu" in run.stdout and "FAIL" not in run.stdout
    import torch

    if not torch.cuda.is_available():
        default = subprocess.run(
            [sys.executable, str(script)], capture_output=True, text=True, timeout=60
        )
        assert default.returncode == 0 and "no CUDA device here" in default.stdout

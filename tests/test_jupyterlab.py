"""The notebooks as a reader meets them in JupyterLab: start a real server on loopback, open the
home notebook in headless Chromium, run its first cells and see their fresh output. Every wait is
on something the page shows (a cell becoming active, a prompt number, an output), never a fixed
pause."""
import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from secrets import token_hex

import pytest
from conftest import NBS

pytestmark = pytest.mark.browser
LOADS_DATA = 'data = load_dataset("digits")'


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_answering(url: str, server: subprocess.Popen, seconds: float = 60) -> None:
    "Poll the server's status endpoint until it answers; fail early if the server exits."
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=1)
            return
        except OSError:
            if server.poll() is not None:
                pytest.fail(f"jupyter lab exited: {server.stderr.read().decode()[-2000:]}")
            time.sleep(0.2)
    pytest.fail(f"jupyter lab did not answer within {seconds} s")


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    "JupyterLab on 127.0.0.1 serving a scratch copy of the home notebook (autosave can't touch it)."
    root = tmp_path_factory.mktemp("lab")
    shutil.copy(NBS / "index.ipynb", root / "index.ipynb")
    port, token = free_port(), token_hex(16)
    cmd = [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--allow-root",
           "--ip=127.0.0.1", f"--port={port}", f"--IdentityProvider.token={token}",
           f"--ServerApp.root_dir={root}", "--LabApp.news_url=",
           "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
    server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_answering(f"{url}/api/status?token={token}", server)
        yield url, token
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_home_notebook_runs_in_jupyterlab(lab, browser):
    url, token = lab
    page = browser.new_page()
    page.goto(f"{url}/lab/tree/index.ipynb?token={token}")
    page.wait_for_selector(".jp-Notebook .jp-CodeCell", timeout=60_000)
    page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=60_000)
    cells = json.loads((NBS / "index.ipynb").read_text())["cells"]
    target = next(i for i, c in enumerate(cells) if LOADS_DATA in "".join(c["source"]))
    page.locator(".jp-Notebook .jp-Cell").first.click()
    page.keyboard.press("Escape")  # command mode: Shift+Enter runs the cell and selects the next
    active = ".jp-Notebook .jp-Cell.jp-mod-active"
    for index in range(target + 1):  # every cell from the top through the one that loads data
        page.keyboard.press("Shift+Enter")
        page.wait_for_function(  # JupyterLab has moved the selection on: the next key is safe
            "([sel, i]) => { const cells = [...document.querySelectorAll('.jp-Notebook .jp-Cell')];"
            " return cells.indexOf(document.querySelector(sel)) === i; }",
            arg=[active, index + 1], timeout=60_000)
    dataset_cell = page.locator(".jp-CodeCell", has_text=LOADS_DATA)
    prompt = dataset_cell.locator(".jp-InputPrompt")
    page.wait_for_function("el => /\\[\\d+\\]/.test(el.textContent)",
                           arg=prompt.element_handle(), timeout=300_000)
    output = dataset_cell.locator(".jp-OutputArea-output").first
    output.wait_for(timeout=60_000)
    expected = "Dataset('digits': 1,347 train / 450 test, 64 features, 10 classes"
    assert expected in output.inner_text()
    stderr = ".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']"
    assert not page.locator(stderr).count()
    page.close()

"""The notebooks as a reader meets them in JupyterLab: start a real server on loopback, open the home notebook in
headless Chromium, run its first cells and see their fresh output."""
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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    "A JupyterLab server on 127.0.0.1 serving a scratch copy of the notebooks (autosave cannot touch the repo)."
    root = tmp_path_factory.mktemp("lab")
    shutil.copy(NBS / "index.ipynb", root / "index.ipynb")
    port, token = free_port(), token_hex(16)
    cmd = [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--allow-root", "--ip=127.0.0.1", f"--port={port}",
           f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}", "--LabApp.news_url=",
           "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
    server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):  # up to 60 s for the server to answer
            try:
                urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=1)
                break
            except OSError:
                if server.poll() is not None: pytest.fail(f"jupyter lab exited: {server.stderr.read().decode()[-2000:]}")
                time.sleep(0.5)
        else: pytest.fail("jupyter lab did not answer within 60 s")
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
    page.locator(".jp-CodeCell").first.locator(".jp-InputArea-editor").click()
    page.keyboard.press("Escape")  # command mode: Shift+Enter runs the cell and selects the next
    cells = json.loads((NBS / "index.ipynb").read_text())["cells"]
    target = next(i for i, c in enumerate(cells) if 'data = load_dataset("digits")' in "".join(c["source"]))
    for _ in range(target + 1):  # every cell from the top through the one that loads the data
        page.keyboard.press("Shift+Enter")
        page.wait_for_timeout(300)  # let JupyterLab move the selection before the next key
    dataset_cell = page.locator(".jp-CodeCell", has_text='data = load_dataset("digits")')
    prompt = dataset_cell.locator(".jp-InputPrompt")
    page.wait_for_function("el => /\\[\\d+\\]/.test(el.textContent)", arg=prompt.element_handle(), timeout=300_000)
    output = dataset_cell.locator(".jp-OutputArea-output").first
    output.wait_for(timeout=60_000)
    assert "Dataset('digits': 1,347 train / 450 test, 64 features, 10 classes" in output.inner_text()
    assert not page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']").count()
    page.close()

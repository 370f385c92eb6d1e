"""The documentation as a reader meets it.

Always: the notebooks follow the house anatomy and carry clean saved outputs, none of which makes
the site load a script from outside; README.md says what `nbs/index.ipynb` says; the sidebar lists
every page; each notebook, exported by nbconvert, opens in a real browser.

Where Quarto is on PATH: `nbdev_docs` renders the site, README.md is what `nbdev_readme` makes of
index.ipynb, and in headless Chromium, allowed to reach nothing but loopback, every sidebar page
shows its images, typesets every formula, shows no traceback, logs no console or page error, asks
no outside host for anything and runs no line past the content column. One full-page screenshot
per page is saved under pytest's temporary directory (the path is printed at the end of the run)."""
import functools
import http.server
import json
import re
import shutil
import subprocess
import threading
from types import SimpleNamespace
from urllib.parse import urlsplit

import pytest
import yaml
from conftest import NBS, ROOT, SITE_REPORT

NOTEBOOKS = sorted(NBS.glob("[0-9][0-9]*_*.ipynb"))  # 02a_graph_pruning too
PAGES = [NBS / "index.ipynb", *NOTEBOOKS]
LOCAL_PATH = re.compile(r"(/root/|/home/\w+/|/work/|/tmp/|site-packages|[A-Z]:\\\\Users)")
# Saved outputs of these types make Quarto add require.js and jQuery from cdnjs to the page
# (quarto-cli, src/core/jupyter/widgets.ts: `haveOutputType(nb, [kApplicationJavascript,
# kTextHtml])`), and widget views load their manager from unpkg.
# `modelopt_nb.core.markdown_tables()` makes pandas tables text/markdown instead of HTML.
SCRIPT_MIMES = ("text/html", "application/javascript", "application/vnd.jupyter.widget-view+json")
LOOPBACK = ("127.0.0.1", "localhost")
# Inline $...$ and display $$...$$ as pandoc reads them: no space just inside the dollars, no digit
# after the closing one, no blank line within.
FORMULA = re.compile(r"\$\$.+?\$\$"
                     r"|(?<![\\$])\$(?![\s$])(?:[^$\\\n]|\\.|\n(?!\s*\n))+?(?<![\s\\])\$(?!\d)",
                     re.S)
RAW_TEX = re.compile(r"\\[A-Za-z]+|\\[()[\]]|\$\$|\$[^$\s][^$]*\$")


def cells(path):
    return json.loads(path.read_text())["cells"]


def source(cell):
    return "".join(cell["source"])


def directives(cell):
    "A cell's `#| key: value` lines as a dict; a bare `#| hide` gives {'hide': 'true'}."
    found = re.findall(r"^#\|\s*([\w-]+)\s*:?\s*(.*?)\s*$", source(cell), flags=re.M)
    return {key: value or "true" for key, value in found}


def output_texts(cell):
    for out in cell.get("outputs", []):
        if out["output_type"] == "stream": yield out["name"], "".join(out["text"])
        elif out["output_type"] == "error": yield "error", "\n".join(out["traceback"])
        else:
            for mime, data in out.get("data", {}).items():
                if mime.startswith("text/"): yield mime, "".join(data)


def html_name(path):
    "The page a notebook becomes: nbdev drops the number prefix (`02_pruning.ipynb`: pruning.html)."
    return re.sub(r"^\d+\S*?_", "", path.stem) + ".html"  # as nbdev: 02a_graph_pruning too


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_anatomy(path):
    nb = cells(path)
    title = source(nb[0]).strip().splitlines()
    assert nb[0]["cell_type"] == "markdown" and title[0].startswith("# "), "first cell: '# Title'"
    description = [line for line in title[1:] if line.strip()]
    assert description and all(line.startswith("> ") for line in description), \
        "first cell: only the title and '> description'"
    module = path.stem.split("_", 1)[1]
    assert source(nb[1]).strip() == f"#| default_exp {module}", \
        "second cell: #| default_exp <module>"
    assert "nbdev_export()" in source(nb[-1]) and source(nb[-1]).startswith("#| hide"), \
        "last cell: hidden export"
    assert (ROOT / "modelopt_nb" / f"{module}.py").exists()


@pytest.mark.parametrize("path", PAGES, ids=lambda p: p.name)
def test_saved_outputs_are_clean(path):
    nb = cells(path)
    code = [c for c in nb if c["cell_type"] == "code"]
    assert any(c.get("outputs") for c in code), \
        "notebook saved without outputs: execute it before committing"
    for cell in code:
        assert cell.get("execution_count") is None, "run nbdev_clean"
        for kind, text in output_texts(cell):
            where = source(cell)[:80]
            assert kind != "error" and "Traceback" not in text, f"saved traceback in: {where}"
            assert not LOCAL_PATH.search(text), f"local path in the output of: {where}"
            assert "\r" not in text and "it/s]" not in text and "epoch/s]" not in text, \
                "progress-bar residue"
            assert kind != "stderr" or not text.strip(), \
                f"stderr (warnings) in the output of: {where}"


@pytest.mark.parametrize("path", PAGES, ids=lambda p: p.name)
def test_no_output_makes_the_site_load_scripts(path):
    "An HTML or JavaScript output makes Quarto load require.js and jQuery from a CDN."
    found = [f"{mime} in the output of: {source(cell)[:70]!r}"
             for cell in cells(path) if cell["cell_type"] == "code"
             for out in cell.get("outputs", [])
             for mime in out.get("data", {}) if mime in SCRIPT_MIMES]
    assert not found, (
        "outputs that make the docs page load scripts from a CDN; call "
        "`modelopt_nb.core.markdown_tables()` in the hidden set-up cell (pandas tables then render "
        "as Markdown), show other objects as Markdown or text, and re-execute:\n"
        + "\n".join(found))


def plain(markdown):
    """Markdown reduced to what any renderer keeps of it (words, code, table cells): no comments,
    link targets, escapes, typographic quotes, quote markers, fence spacing, table rule widths or
    line wrapping."""
    text = re.sub(r"<!--.*?-->", " ", markdown, flags=re.S)
    text = re.sub(r"\]\([^)\s]*\)", "]", text).replace("[", "").replace("]", "")
    text = text.translate({ord("’"): "'", ord("‘"): "'", ord("“"): '"', ord("”"): '"'})
    text = re.sub(r"\\([!-/:-@\[-`{-~])", r"\1", text)
    text = re.sub(r"^>[ \t]?", "", text, flags=re.M)
    text = re.sub(r"\|\s*:?-+:?\s*(?=\|)", "|---", text)
    text = re.sub(r"```[ \t]*(\w*)", r"```\1", text)
    return " ".join(text.split())


def readme_parts(path):
    "What a notebook puts in README.md, in order: its markdown, the code and the outputs it shows."
    for cell in cells(path):
        flags = directives(cell)
        if cell["cell_type"] == "markdown":
            yield "markdown", source(cell)
        elif "hide" not in flags and flags.get("include") != "false":
            if flags.get("echo") != "false":
                lines = source(cell).splitlines()
                yield "code", "\n".join(line for line in lines if not line.startswith("#|"))
            outputs = dict(output_texts(cell))
            shown = (outputs.get("text/markdown") or outputs.get("stdout")
                     or outputs.get("text/plain"))
            if shown and flags.get("output") != "false":
                yield "output", shown


def test_readme_says_what_index_says():
    """README.md is generated from index.ipynb (`nbdev_readme`; `nbdev_docs` runs it too). Checked
    without Quarto: every markdown cell, shown code cell and shown output is there, as text, however
    the Quarto/pandoc version wrapped, quoted or escaped it."""
    readme = (ROOT / "README.md").read_text()
    assert "AUTOGENERATED" in readme, "README.md is generated: run nbdev_readme, do not edit it"
    relative = re.findall(r"\]\((?![a-z]+:)[^)]*\.ipynb[^)]*\)", readme)
    assert not relative, f"links that lead nowhere on GitHub (nbs/readme.lua rewrites them): " \
        f"{relative}"
    text = plain(readme)
    for kind, part in readme_parts(NBS / "index.ipynb"):
        assert plain(part) in text, \
            f"README.md lacks the {kind} {part.strip()[:70]!r}: run nbdev_readme"


def test_sidebar_lists_every_page_in_reading_order():
    sidebar = yaml.safe_load((NBS / "sidebar.yml").read_text())["website"]["sidebar"]["contents"]
    hrefs = [entry["href"] if isinstance(entry, dict) else entry for entry in sidebar]
    assert hrefs == [p.name for p in PAGES], \
        "sidebar.yml must list index then every numbered notebook, in order"


@pytest.fixture(scope="module")
def html_exporter():
    return pytest.importorskip("nbconvert").HTMLExporter()


@pytest.mark.browser
@pytest.mark.parametrize("path", PAGES, ids=lambda p: p.name)
def test_page_renders_in_a_browser(path, html_exporter, browser, tmp_path):
    "Each notebook exported by nbconvert with its saved outputs: images decode, no traceback shows."
    body, _ = html_exporter.from_filename(str(path))
    (tmp_path / "page.html").write_text(body)
    page = browser.new_page()
    page.goto((tmp_path / "page.html").as_uri())
    images = page.eval_on_selector_all("img", "imgs => imgs.map(i => [i.complete, i.naturalWidth])")
    assert all(complete and width > 0 for complete, width in images), "a broken image"
    text = page.inner_text("body")
    assert "Traceback" not in text and not LOCAL_PATH.search(text)
    title = source(cells(path)[0]).splitlines()[0].lstrip("# ").strip()
    assert page.locator("h1").first.inner_text().strip().rstrip("¶").strip() == title
    page.close()


# ---- the site Quarto renders ----

def _quiet_handler(directory):
    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args): pass
    return functools.partial(Handler, directory=directory)


@pytest.fixture(scope="module")
def site():
    """Render the site once with nbdev_docs and serve _docs on loopback; skip without Quarto.
    nbdev_docs rewrites README.md when index.ipynb is newer; the test puts back what was there."""
    if not shutil.which("quarto"):
        pytest.skip("quarto is not on PATH, so nbdev_docs cannot render the site here; build "
                    "Quarto with ../shared/tools/build-quarto.sh (README.md, Developing)")
    readme = ROOT / "README.md"
    committed = readme.read_bytes()
    done = subprocess.run(["nbdev_docs"], cwd=ROOT, capture_output=True, text=True)
    if readme.read_bytes() != committed:
        readme.write_bytes(committed)
    log = done.stdout + done.stderr
    assert done.returncode == 0, f"nbdev_docs failed:\n{log[-3000:]}"
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _quiet_handler(str(ROOT / "_docs")))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield SimpleNamespace(url=f"http://127.0.0.1:{server.server_address[1]}", log=log,
                          readme=committed.decode())
    server.shutdown()


@pytest.mark.docs
def test_render_has_no_warnings(site):
    "Quarto and pandoc warn when a formula cannot be converted or a link or file is not found."
    warnings = [line for line in site.log.splitlines() if re.search(r"\bWARN(ING)?\b", line)]
    assert not warnings, "\n".join(warnings)


@pytest.mark.docs
def test_readme_is_what_nbdev_readme_renders(site, tmp_path):
    "index.ipynb as nbdev processed it, rendered to GitHub Markdown the way nbdev_readme does it."
    for file in (ROOT / "_proc").iterdir():  # configuration and index.ipynb; without sidebar.yml
        wanted = file.suffix != ".ipynb" or file.name == "index.ipynb"  # Quarto renders one page
        if file.is_file() and file.name != "sidebar.yml" and wanted:
            shutil.copy(file, tmp_path / file.name)
    render = ["quarto", "render", "index.ipynb", "-o", "README.md", "-t", "gfm", "--no-execute"]
    subprocess.run(render, cwd=tmp_path, check=True, capture_output=True)
    fresh = (tmp_path / "_docs" / "README.md").read_text()
    assert plain(site.readme) == plain(fresh), \
        "README.md is out of step with nbs/index.ipynb: run nbdev_readme and commit README.md"


PAGE_FACTS = """async () => {
  const main = document.querySelector("main") || document.body;
  for (const img of document.images) img.loading = "eager";
  await Promise.all([...document.images].map(img => img.decode().catch(() => null)));
  const describe = e => `<${e.tagName.toLowerCase()} class="${e.className}"> `
    + (e.textContent || "").trim().slice(0, 60);
  const formulas = [...document.querySelectorAll("math")];
  const prose = main.cloneNode(true);
  prose.querySelectorAll("pre, code, math, script, style").forEach(e => e.remove());
  const edge = main.getBoundingClientRect().right + 1;
  const scrolls = e => ["auto", "scroll"].includes(getComputedStyle(e).overflowX);
  const heldBack = e => {
    for (let a = e.parentElement; a && a !== main; a = a.parentElement)
      if (scrolls(a) && a.getBoundingClientRect().right <= edge) return true;
    return false;
  };
  const spilling = [], clipped = [];
  for (const e of main.querySelectorAll("*")) {
    const right = e.getBoundingClientRect().right;
    if (right > edge && e.parentElement.getBoundingClientRect().right <= edge && !heldBack(e))
      spilling.push(describe(e));
    const overflowX = getComputedStyle(e).overflowX;
    if (e.scrollWidth > e.clientWidth + 1 && (overflowX === "hidden" || overflowX === "clip"))
      clipped.push(describe(e));
  }
  return {
    images: document.images.length,
    broken_images: [...document.images].filter(i => !(i.complete && i.naturalWidth > 0))
      .map(i => i.src),
    formulas: formulas.length,
    flat_formulas: formulas.filter(m => !m.getBoundingClientRect().width).length,
    raw_tex: prose.textContent,
    tracebacks: main.querySelectorAll(".cell-output-error").length
      + (main.innerText.match(/Traceback \\(most recent call last\\)/g) || []).length,
    spilling, clipped,
    page_wider_than_window: document.documentElement.scrollWidth > window.innerWidth,
  };
}"""


def visit(context, url, screenshot):
    "Open one page offline, gather what a reader would notice, and save a full-page screenshot."
    page = context.new_page()
    outside, errors, failed = [], [], []

    def route(request_route):
        if urlsplit(request_route.request.url).hostname in LOOPBACK:
            request_route.continue_()
        else:
            outside.append(request_route.request.url)
            request_route.abort("blockedbyclient")

    page.route("**/*", route)
    page.on("console", lambda message: message.type == "error" and errors.append(message.text))
    page.on("pageerror", lambda error: errors.append(f"uncaught {error}"))
    page.on("response", lambda response: response.status >= 400 and failed.append(
        f"{response.status} {response.url}"))
    response = page.goto(url, wait_until="load")
    facts = page.evaluate(PAGE_FACTS)
    page.screenshot(path=str(screenshot), full_page=True)
    page.close()
    facts["raw_tex"] = RAW_TEX.findall(facts["raw_tex"])
    return dict(facts, status=response.status, outside=sorted(set(outside)), console_errors=errors,
                failed_requests=failed)


@pytest.fixture(scope="module")
def visits(site, browser, tmp_path_factory, pytestconfig):
    "Each page the rendered sidebar links to, visited once: {'sidebar': names, 'pages': facts}."
    screenshots = tmp_path_factory.mktemp("docs-site")
    context = browser.new_context(viewport={"width": 1280, "height": 900}, service_workers="block")
    page = context.new_page()
    page.goto(f"{site.url}/index.html")
    links = page.eval_on_selector_all("#quarto-sidebar a.sidebar-link",
                                      "links => links.map(a => a.getAttribute('href'))")
    page.close()
    # Quarto's script shortens links to `./index.html` into `./` when the site is served
    sidebar = [urlsplit(link).path.rsplit("/", 1)[-1] or "index.html" for link in links]
    pages = {name: visit(context, f"{site.url}/{name}", screenshots / name.replace(".html", ".png"))
             for name in sidebar}
    context.close()
    table = ["page               images  formulas  console errors  outside requests  tracebacks"]
    table += [f"{name:<18} {f['images']:>6}  {f['formulas']:>8}  {len(f['console_errors']):>14}  "
              f"{len(f['outside']):>16}  {f['tracebacks']:>10}" for name, f in pages.items()]
    pytestconfig.stash[SITE_REPORT] = {"table": table, "screenshots": screenshots}
    print("\n".join(table), f"\nfull-page screenshots: {screenshots}", sep="\n")
    return {"sidebar": sidebar, "pages": pages}


@pytest.mark.docs
@pytest.mark.browser
def test_rendered_sidebar_is_the_reading_order(visits):
    assert visits["sidebar"] == [html_name(p) for p in PAGES]


def formulas_in(notebook):
    "Formulas Quarto finds in a processed notebook: markdown cells and Markdown outputs (show_doc)."
    count = 0
    for cell in cells(notebook):
        texts = [source(cell)] if cell["cell_type"] == "markdown" else []
        texts += ["".join(out["data"]["text/markdown"]) for out in cell.get("outputs", [])
                  if "text/markdown" in out.get("data", {})]
        for text in texts:
            text = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
            text = re.sub(r"(`+)(?!`).*?(?<!`)\1(?!`)", "", text, flags=re.S)
            count += len(FORMULA.findall(text))
    return count


@pytest.mark.docs
@pytest.mark.browser
@pytest.mark.parametrize("path", PAGES, ids=html_name)
def test_rendered_page(path, visits):
    "One sidebar page in offline Chromium: everything loads from loopback and shows as it should."
    name = html_name(path)
    assert name in visits["pages"], f"{name} is not linked from the rendered sidebar"
    facts = visits["pages"][name]
    expected = formulas_in(ROOT / "_proc" / path.name)
    problems = {
        "HTTP status": facts["status"] if facts["status"] != 200 else None,
        "broken images": facts["broken_images"],
        "failed requests": facts["failed_requests"],
        "requests to outside hosts": facts["outside"],
        "console or page errors": facts["console_errors"],
        "tracebacks shown": facts["tracebacks"],
        "math left as TeX": facts["raw_tex"],
        "formulas typeset": (f"{facts['formulas']}, of {expected} in the notebook"
                             if facts["formulas"] != expected else None),
        "formulas with no width": facts["flat_formulas"],
        "elements running past the content column": facts["spilling"],
        "elements clipping their content": facts["clipped"],
        "page wider than the window": facts["page_wider_than_window"],
    }
    problems = {what: found for what, found in problems.items() if found}
    report = "\n".join(f"{what}: {found}" for what, found in problems.items())
    assert not problems, f"{name}: {report}"

"""End-to-end check of the bias explorer (notebook 06) in a real browser: JupyterLab + headless Chromium.

    .venv/bin/python tests/browser/explorer_browser.py [--screenshots DIR] [--timeout S]   (or: make browser-test)

It copies notebooks/smoke/06_explore.ipynb (profile "smoke": built-in digits data, tiny runs) into the work
folder .nbcheck/browser/ (inside the repository, so that paperlib finds the repository root), with its outputs
and saved widget state cleared (so only a live widget can pass), starts JupyterLab on it with its cache and
figures in the work folder, and drives headless Chromium through selenium: run all cells, then every control
of the explorer in turn, then "compute live" on a point nobody computed. One line per step; screenshots in
--screenshots; exit status 1 with a one-line reason on the first failure. JupyterLab, its kernel, Chromium
and chromedriver are always stopped. Not named test_*.py: the default `pytest` run does not collect it.

The explorer's DOM contract it checks (paperlib/report/explore.py, class Explorer): a VBox with class
paperlib-explorer holding .explorer-dataset / .explorer-method / .explorer-target (Dropdowns),
.explorer-ratio / .explorer-ipc (SelectionSliders), .explorer-compute / .explorer-stop (Buttons),
.explorer-status (text: "computing", "computed live", "stored", "not computed"), .explorer-data and
.explorer-training (HTML with an <img> or a <p class="explorer-empty">), .explorer-metrics (a <table> when
a result is shown) and .explorer-progress; every control disabled during a live run, re-enabled afterwards.

Needs chromium and chromedriver (tests/browser/install_chromium.sh) and selenium (requirements.lock).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
WORK = ROOT / ".nbcheck" / "browser"
NOTEBOOK = ROOT / "notebooks" / "smoke" / "06_explore.ipynb"

EXPLORER = ".paperlib-explorer"
CONTROLS = {"dataset": ".explorer-dataset", "method": ".explorer-method", "target": ".explorer-target",
            "ratio": ".explorer-ratio", "ipc": ".explorer-ipc", "compute": ".explorer-compute"}

# JupyterLab settings for the check (a user-settings folder of its own in the work folder): every cell
# attached to the DOM (no virtual scrolling of cells out of view), and no news / update requests (no network
# here: they would only add console errors).
LAB_SETTINGS = {
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false",
                                                                        "checkForUpdates": False},
}

# SEVERE browser-console entries known to be harmless (substrings of the message). None so far: with the news
# and update checks off (LAB_SETTINGS), JupyterLab 4.6 + ipywidgets 8.1 log no SEVERE entry here.
KNOWN_HARMLESS_CONSOLE: tuple[str, ...] = ()


# Every screenshot this check may write (07_computing.png: once a progress bar or a second of the live run
# shows; 99_failure.png: the page at a failure).
SCREENSHOTS = ("01_rendered.png", "02_dataset.png", "03_method.png", "04_target.png", "05_ratio.png", "06_ipc.png",
               "07_computing.png", "08_computed.png", "99_failure.png")


class Failure(Exception):
    """A check failed: its message is the one-line reason."""


T0 = time.monotonic()


def step(message: str) -> None:
    print(f"[{time.monotonic() - T0:6.1f}s] {message}", flush=True)


# --- the work folder and JupyterLab ------------------------------------------------------------------------

def prepare_work_folder(work: Path, notebook: Path, screenshots: Path) -> Path:
    """A fresh work folder with the notebook (outputs and saved widget state cleared) and the lab settings."""
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    screenshots.mkdir(parents=True, exist_ok=True)
    for name in SCREENSHOTS:  # only this check's own files: the folder may be a shared one
        (screenshots / name).unlink(missing_ok=True)
    nb = json.loads(notebook.read_text())
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            cell["outputs"], cell["execution_count"] = [], None
    nb["metadata"].pop("widgets", None)  # saved widget views would render before the kernel runs
    copy = work / notebook.name
    copy.write_text(json.dumps(nb, indent=1))
    for name, values in LAB_SETTINGS.items():
        path = work / "lab-settings" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))
    return copy


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_lab(work: Path, port: int, token: str) -> tuple[subprocess.Popen, object]:
    env = dict(os.environ,
               PAPERLIB_CACHE=str(work / "cache"), PAPERLIB_FIGURES=str(work / "figures"), PAPERLIB_RESULTS="off",
               PYTHONDONTWRITEBYTECODE="1", JUPYTER_RUNTIME_DIR=str(work / "runtime"),
               IPYTHONDIR=str(work / "ipython"), MPLCONFIGDIR=str(work / "matplotlib"))
    # As a reader's JupyterLab: no data root or publishing of the shell, and progress bars on (CI turns them off,
    # and the live run's bars are part of what the explorer shows).
    for name in ("PAPERLIB_DATA", "PAPERLIB_PUBLISH", "CI", "PAPERLIB_NO_PROGRESS"):
        env.pop(name, None)
    command = [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
               "--ServerApp.port_retries=0", f"--ServerApp.token={token}", f"--ServerApp.root_dir={ROOT}",
               f"--LabApp.user_settings_dir={work / 'lab-settings'}",
               f"--LabApp.workspaces_dir={work / 'lab-workspaces'}",
               "--LabApp.expose_app_in_browser=True",  # window.jupyterapp: run-all command, kernel status
               "--ContentsManager.allow_hidden=True",  # the work folder .nbcheck/browser is a hidden one
               "--LabApp.news_url=", "--ServerApp.terminals_enabled=False"]
    if os.geteuid() == 0:
        command.append("--allow-root")
    log = open(work / "jupyterlab.log", "w")
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                               start_new_session=True)
    return process, log


def wait_for_lab(process: subprocess.Popen, port: int, token: str, timeout: float) -> None:
    url = f"http://127.0.0.1:{port}/api/status?token={token}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise Failure(f"JupyterLab exited with status {process.returncode} (see {WORK / 'jupyterlab.log'})")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.3)
    raise Failure(f"JupyterLab did not answer within {timeout:.0f} s")


def stop_lab(process: subprocess.Popen, port: int, token: str) -> None:
    """Shut JupyterLab and its kernels down (its API, then SIGTERM, then SIGKILL), and check none is left."""
    import psutil

    try:
        tree = [psutil.Process(process.pid)] + psutil.Process(process.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        tree = []
    if process.poll() is None:
        try:
            request = urllib.request.Request(f"http://127.0.0.1:{port}/api/shutdown?token={token}", method="POST")
            urllib.request.urlopen(request, timeout=5).close()
        except OSError:
            pass
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
    gone, alive = psutil.wait_procs(tree, timeout=10)
    for leftover in alive:  # a kernel in a session of its own: only processes this script started
        leftover.kill()
    psutil.wait_procs(alive, timeout=5)


# --- the browser ---------------------------------------------------------------------------------------------

def start_browser(work: Path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, chromedriver = shutil.which("chromium"), shutil.which("chromedriver")
    if not chromium or not chromedriver:
        raise Failure("chromium or chromedriver not found: run tests/browser/install_chromium.sh")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     "--window-size=1400,1800", "--no-first-run", "--disable-extensions",
                     f"--user-data-dir={work / 'chromium-profile'}"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(executable_path=chromedriver, log_output=str(work / "chromedriver.log"))
    driver = webdriver.Chrome(service=service, options=options)
    driver.set_page_load_timeout(60)
    driver.set_script_timeout(30)
    return driver


def stop_browser_leftovers(work: Path) -> None:
    """Kill any Chromium process still running on this check's own profile folder (after driver.quit())."""
    import psutil

    marker = f"--user-data-dir={work / 'chromium-profile'}"
    left = []
    for process in psutil.process_iter(["cmdline"]):
        try:
            if marker in (process.info["cmdline"] or []):
                left.append(process)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    gone, alive = psutil.wait_procs(left, timeout=5)
    for process in alive:
        process.kill()
    psutil.wait_procs(alive, timeout=5)


class Page:
    """The notebook open in JupyterLab, and the explorer's widget in it."""

    def __init__(self, driver, screenshots: Path, timeout: float) -> None:
        self.driver, self.screenshots, self.timeout = driver, screenshots, timeout
        self.console: list[dict] = []
        self.shots: list[str] = []

    # plumbing

    def js(self, script: str, *args):
        return self.driver.execute_script(script, *args)

    def wait(self, condition, what: str, timeout: float | None = None, poll: float = 0.1):
        """Poll ``condition()`` until it returns a truthy value; fail with ``what`` after ``timeout``."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            value = condition()
            if value:
                return value
            if time.monotonic() > deadline:
                raise Failure(f"timed out after {timeout or self.timeout:.0f} s waiting for {what}")
            time.sleep(poll)

    def collect_console(self) -> None:
        self.console.extend(self.driver.get_log("browser"))

    def screenshot(self, name: str, whole: bool = False) -> None:
        """The explorer (or the whole window, with ``whole`` or when there is no explorer) as ``name``."""
        explorer = self.driver.find_elements("css selector", EXPLORER)
        path = self.screenshots / name
        if explorer and not whole:
            self.js("arguments[0].scrollIntoView({block: 'start'})", explorer[0])
            explorer[0].screenshot(str(path))
        else:
            self.driver.save_screenshot(str(path))
        self.shots.append(name)

    def find(self, selector: str):
        found = self.driver.find_elements("css selector", f"{EXPLORER} {selector}")
        if not found:
            raise Failure(f"no element {selector!r} in the explorer")
        return found[0]

    # kernel

    def kernel_status(self) -> str | None:
        return self.js("""
            const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;
            const k = w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel;
            return k ? k.status : null;""")

    def watch_kernel(self) -> None:
        """Count the kernel's busy phases in the page (window.__busy), to wait for the answer to an action."""
        self.js("""
            const k = window.jupyterapp.shell.currentWidget.sessionContext.session.kernel;
            window.__busy = 0;
            k.statusChanged.connect((_, status) => { if (status === 'busy') window.__busy += 1; });""")

    def busy_count(self) -> int:
        return self.js("return window.__busy || 0;")

    def settle(self, before: int, what: str) -> None:
        """Wait until the kernel was busy since ``before`` (the action reached it) and is idle again."""
        self.wait(lambda: self.busy_count() > before, f"the kernel to receive {what}", timeout=15)
        idle_since = [None]

        def idle():
            if self.kernel_status() != "idle":
                idle_since[0] = None
                return False
            idle_since[0] = idle_since[0] or time.monotonic()
            return time.monotonic() - idle_since[0] > 0.5
        self.wait(idle, f"the kernel to finish {what}")
        self.check_no_error()

    def check_no_error(self) -> None:
        """Fail on a Python traceback anywhere in the notebook's outputs (the explorer's or a cell's)."""
        error = self.js("""
            for (const out of document.querySelectorAll('.jp-OutputArea-output')) {
                const text = out.innerText || '';
                if (text.includes('Traceback') || /^\\w*(Error|Exception)\\b.*$/m.test(text) &&
                        out.getAttribute('data-mime-type') === 'application/vnd.jupyter.stderr') {
                    const lines = text.trim().split('\\n').filter(l => l.trim());
                    return lines[lines.length - 1];
                }
            }
            return null;""")
        if error:
            raise Failure(f"Python error in the notebook: {error.strip()[:300]}")

    # explorer

    def state(self) -> dict:
        """What the explorer shows: status text, data image, disabled controls, metrics table, training view."""
        return self.js("""
            const root = document.querySelector(arguments[0]);
            if (!root) return null;
            const q = s => root.querySelector(s);
            const disabled = {};
            for (const [name, sel] of Object.entries(arguments[1])) {
                const el = q(sel);
                if (!el) { disabled[name] = null; continue; }
                const input = el.matches('select, button, input') ? el : el.querySelector('select, button, input');
                const slider = el.querySelector('.noUi-target, .slider');
                disabled[name] = !!((input && input.disabled) || (slider && slider.hasAttribute('disabled')) ||
                                    el.classList.contains('mod-disabled'));
            }
            const stop = q('.explorer-stop button') || (q('.explorer-stop') && q('.explorer-stop').closest('button'));
            const img = q('.explorer-data img');
            return {
                status: q('.explorer-status') ? q('.explorer-status').innerText.trim() : null,
                data_src: img ? img.getAttribute('src') : null,
                data_empty: !!q('.explorer-data .explorer-empty'),
                metrics_table: !!q('.explorer-metrics table'),
                training_img: !!q('.explorer-training img'),
                training_empty: !!q('.explorer-training .explorer-empty'),
                progress_bars: root.querySelectorAll(
                    '.explorer-progress .widget-hprogress, .explorer-progress progress').length,
                stop_disabled: stop ? stop.disabled : null,
                disabled: disabled,
            };""", EXPLORER, CONTROLS)

    def readout(self, name: str) -> str:
        return self.find(CONTROLS[name]).find_element("css selector", ".widget-readout").text.strip()

    def check_images(self) -> None:
        """No broken image in the explorer: every <img> finished loading and has a width."""
        def loaded():
            return self.js("""
                return Array.from(document.querySelectorAll(arguments[0] + ' img')).every(i => i.complete);""",
                           EXPLORER)
        self.wait(loaded, "the explorer's images to load", timeout=10)
        broken = self.js("""
            return Array.from(document.querySelectorAll(arguments[0] + ' img'))
                .filter(i => !(i.naturalWidth > 0))
                .map(i => (i.closest('[class*="explorer-"]') || {className: '?'}).className.split(' ')
                          .filter(c => c.startsWith('explorer-')).join(' ') || '?');""", EXPLORER)
        if broken:
            raise Failure(f"broken image(s) in the explorer: {', '.join(broken)}")


# --- the check ----------------------------------------------------------------------------------------------

# Every code cell has an execution count and the kernel is idle.
ALL_CELLS_RAN = """
    const panel = window.jupyterapp.shell.currentWidget;
    return panel.content.widgets.every(cell => cell.model.type !== 'code' || cell.model.executionCount !== null)
           && panel.sessionContext.session.kernel.status === 'idle';"""


def run_check(page: Page, url: str) -> None:
    driver = page.driver
    driver.get(url)
    page.wait(lambda: page.js("return !!window.jupyterapp && !!document.querySelector('.jp-Notebook');"),
              "JupyterLab to open the notebook", timeout=90)
    page.wait(lambda: page.kernel_status() == "idle", "the kernel to start", timeout=90)
    step("notebook open in JupyterLab, kernel idle")

    # Run all cells (the JupyterLab command behind Run > Run All Cells), then wait for the widget.
    page.watch_kernel()
    page.js("window.jupyterapp.commands.execute('notebook:run-all-cells');")

    def rendered():
        page.check_no_error()
        if page.js("return !!document.querySelector(arguments[0]);", EXPLORER):
            return True
        fallback = page.js("""
            return Array.from(document.querySelectorAll('.jp-OutputArea-output'))
                .map(o => o.innerText || '')
                .find(t => t.includes('VBox(children=') || t.includes('The bias explorer: run this cell'));""")
        if fallback:
            raise Failure(f"the explorer rendered as text ({fallback.strip()[:60]!r}...): no widget view")
        if page.js(ALL_CELLS_RAN):
            time.sleep(1.0)  # the last output may still be on its way to the page
            if not page.js("return !!document.querySelector(arguments[0]);", EXPLORER):
                raise Failure("every cell ran but no explorer widget (.paperlib-explorer) is in the page")
        return False
    page.wait(rendered, "the explorer widget (.paperlib-explorer) to render")
    page.wait(lambda: page.js(ALL_CELLS_RAN), "every cell to run")
    page.check_no_error()
    step("all cells ran")

    # a. the widget rendered
    explorer = page.driver.find_element("css selector", EXPLORER)
    if not explorer.is_displayed():
        raise Failure("the explorer (.paperlib-explorer) is in the page but not visible")
    for selector in CONTROLS.values():
        page.find(selector)
    for selector in (".explorer-stop", ".explorer-status", ".explorer-data", ".explorer-training",
                     ".explorer-metrics", ".explorer-progress"):
        page.find(selector)
    first = page.state()
    if not first["data_src"]:
        raise Failure(f"no biased-data image in .explorer-data (status: {first['status']!r})")
    if first["stop_disabled"] is False:
        raise Failure("the stop button is enabled with no live run")
    page.check_images()
    page.screenshot("01_rendered.png")
    step(f"a. explorer rendered (status: {first['status']!r}); 01_rendered.png")

    # b. every control in turn
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select

    def choose(name: str, index: int | None = None, label: str | None = None) -> str:
        element = page.find(f"{CONTROLS[name]} select")
        if not element.is_enabled():
            raise Failure(f"the {name} dropdown is disabled")
        select = Select(element)
        before = page.busy_count()
        if label is not None:
            select.select_by_visible_text(label)
        else:
            select.select_by_index(index)
        chosen = select.first_selected_option.text
        page.settle(before, f"the {name} change")
        return chosen

    def other_index(name: str, last: bool = False) -> int:
        """Another option than the selected one: the next (or the last one, with ``last``)."""
        select = Select(page.find(f"{CONTROLS[name]} select"))
        current = [o.text for o in select.options].index(select.first_selected_option.text)
        if len(select.options) < 2:
            raise Failure(f"the {name} dropdown has a single option")
        if last and current != len(select.options) - 1:
            return len(select.options) - 1
        return (current + 1) % len(select.options)

    def slide(name: str) -> tuple[str, str]:
        """Move a SelectionSlider one step (click its noUiSlider handle, then an arrow key)."""
        handle = page.find(f"{CONTROLS[name]} .noUi-handle")
        now, top = (int(float(handle.get_attribute(a))) for a in ("aria-valuenow", "aria-valuemax"))
        key = Keys.ARROW_LEFT if now >= top else Keys.ARROW_RIGHT
        before_text, before = page.readout(name), page.busy_count()
        handle.click()
        handle.send_keys(key)
        page.wait(lambda: page.readout(name) != before_text, f"the {name} slider to move", timeout=10)
        page.settle(before, f"the {name} change")
        return before_text, page.readout(name)

    def data_changed(before: dict, what: str) -> None:
        page.wait(lambda: (s := page.state()) and s["data_src"] and s["data_src"] != before["data_src"],
                  f"the biased-data image to change with the {what}", timeout=30)

    before = page.state()
    chosen = choose("dataset", other_index("dataset"))
    data_changed(before, "dataset")
    page.check_images()
    page.screenshot("02_dataset.png")
    step(f"b. dataset -> {chosen!r}: data image changed; 02_dataset.png")

    methods = [o.text for o in Select(page.find(f"{CONTROLS['method']} select")).options]
    distilling = "dm" if "dm" in methods else None
    if distilling is None:
        raise Failure(f"no distilling method 'dm' among the explorer's methods {methods}")
    original = Select(page.find(f"{CONTROLS['method']} select")).first_selected_option.text
    chosen = choose("method", other_index("method"))
    page.check_images()
    page.screenshot("03_method.png")
    target = "disabled" if page.state()["disabled"]["target"] else "enabled"
    step(f"b. method {original!r} -> {chosen!r} (target {target}); 03_method.png")
    if chosen != distilling:  # back to the distilling method: its target is the next control, then compute
        choose("method", label=distilling)
        step(f"b. method -> {distilling!r} (a distilling method: target and training-set view)")

    # Another target than the current one, but not KDE reweighting: a first KDE run of a dataset also trains its
    # encoder (minutes), too long for the live run below.
    targets = [o.text for o in Select(page.find(f"{CONTROLS['target']} select")).options]
    current = Select(page.find(f"{CONTROLS['target']} select")).first_selected_option.text
    others = [t for t in targets if t != current and "KDE" not in t] or [t for t in targets if t != current]
    chosen = choose("target", label=others[-1])
    page.check_images()
    page.screenshot("04_target.png")
    step(f"b. target -> {chosen!r}; 04_target.png")

    before = page.state()
    old, new = slide("ratio")
    data_changed(before, "ratio")
    page.check_images()
    page.screenshot("05_ratio.png")
    step(f"b. ratio {old} -> {new}: data image changed; 05_ratio.png")

    old, new = slide("ipc")
    page.check_images()
    page.screenshot("06_ipc.png")
    step(f"b. IPC {old} -> {new}; 06_ipc.png")

    # c. compute live on a point nobody computed
    state = page.state()
    if "not computed" not in (state["status"] or ""):
        raise Failure(f"the chosen point is not an uncomputed one: status {state['status']!r}")
    if state["disabled"]["compute"]:
        raise Failure("'compute live' is disabled on a point that is not computed")
    # ipywidgets puts a Button's classes on the <button> itself (button.explorer-compute); a box around it
    # (.explorer-compute button) would do too.
    button = page.find(".explorer-compute")
    if button.tag_name != "button":
        button = page.find(".explorer-compute button")
    busy = page.busy_count()
    button.click()
    start = time.monotonic()
    seen_computing, seen_all_disabled, seen_stop_enabled, computing_since, shot = False, False, False, None, False
    seen_bars = False
    controls = ("dataset", "method", "target", "ratio", "ipc", "compute")

    def done():
        nonlocal seen_computing, seen_all_disabled, seen_stop_enabled, computing_since, shot, seen_bars
        page.check_no_error()
        s = page.state()
        if s is None:
            raise Failure("the explorer disappeared during the live run")
        if "computing" in (s["status"] or ""):
            seen_computing = True
            computing_since = computing_since or time.monotonic()
            if all(s["disabled"][c] for c in controls):
                seen_all_disabled = True
            if s["stop_disabled"] is False:
                seen_stop_enabled = True
            if s["progress_bars"]:
                seen_bars = True
            # the screenshot of the run: once a progress bar shows, else after a second of computing
            if not shot and (s["progress_bars"] or time.monotonic() - computing_since > 1.0):
                shot = True
                page.screenshot("07_computing.png")
        if any(word in (s["status"] or "") for word in ("failed", "stopped")):
            raise Failure(f"the live run ended without a result: {s['status'][:300]!r}")
        finished = "computed live" in (s["status"] or "") and s["metrics_table"]
        return s if finished else None
    page.wait(done, "the live run to finish ('computed live' and a metrics table)", poll=0.05)
    took = time.monotonic() - start
    computing_for = (time.monotonic() - computing_since) if computing_since else 0.0
    if seen_computing and not seen_all_disabled and computing_for > 1.5:
        raise Failure(f"during the live run ({computing_for:.1f} s of 'computing') the controls were never all "
                      f"disabled")
    if seen_computing and not seen_stop_enabled and computing_for > 1.5:
        raise Failure(f"during the live run ({computing_for:.1f} s of 'computing') 'stop' was never enabled")
    during = ("controls disabled and stop enabled while computing" if seen_all_disabled and seen_stop_enabled
              else "run too short to see the controls disabled (best effort)" if not seen_computing or
              computing_for <= 1.5 else "")
    page.settle(busy, "the live run")
    final = page.state()
    if not final["training_img"]:
        raise Failure("no training-set image (.explorer-training img) after a live run of a distilling method"
                      + (" (it shows an empty message)" if final["training_empty"] else ""))
    still = [c for c in ("dataset", "method", "target", "ratio", "ipc") if final["disabled"][c]]
    if still:
        raise Failure(f"controls still disabled after the live run: {', '.join(still)}")
    if final["stop_disabled"] is False:
        raise Failure("'stop' is still enabled after the live run")
    page.check_images()
    page.screenshot("08_computed.png")
    step(f"c. compute live: done in {took:.1f} s, {during}; progress bars {'seen' if seen_bars else 'not seen'}; "
         f"metrics table and training-set image shown; "
         f"{'07_computing.png, ' if shot else ''}08_computed.png")

    # d. browser console
    page.collect_console()
    (WORK / "browser-console.json").write_text(json.dumps(page.console, indent=1))
    severe = [e for e in page.console if e.get("level") == "SEVERE"
              and not any(known in e.get("message", "") for known in KNOWN_HARMLESS_CONSOLE)]
    if severe:
        raise Failure(f"{len(severe)} SEVERE browser-console message(s), the first: {severe[0]['message'][:300]}")
    step(f"d. no SEVERE browser-console message ({len(page.console)} message(s) in all)")

    # e. no broken image
    page.check_images()
    count = page.js("return document.querySelectorAll(arguments[0] + ' img').length;", EXPLORER)
    step(f"e. no broken image ({count} image(s) in the explorer)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--screenshots", type=Path, default=WORK / "screenshots",
                        help="folder for the screenshots (default: .nbcheck/browser/screenshots)")
    parser.add_argument("--timeout", type=float, default=180.0,
                        help="longest wait for one step, in seconds: running the notebook, the live run (180)")
    parser.add_argument("--notebook", type=Path, default=NOTEBOOK, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    screenshots = args.screenshots.resolve()

    def terminated(signum, frame):  # a CI timeout or make's SIGTERM: still stop JupyterLab and the browser
        raise SystemExit(128 + signum)
    signal.signal(signal.SIGTERM, terminated)

    lab = log = driver = page = None
    failure = None
    try:
        copy = prepare_work_folder(WORK, args.notebook.resolve(), screenshots)
        port, token = free_port(), secrets.token_hex(16)
        lab, log = start_lab(WORK, port, token)
        wait_for_lab(lab, port, token, timeout=60)
        step(f"JupyterLab up on port {port} (log: {(WORK / 'jupyterlab.log').relative_to(ROOT)})")
        driver = start_browser(WORK)
        step(f"headless Chromium {driver.capabilities.get('browserVersion', '?')} started")
        page = Page(driver, screenshots, args.timeout)
        run_check(page, f"http://127.0.0.1:{port}/lab/tree/{copy.relative_to(ROOT).as_posix()}?reset&token={token}")
    except Failure as error:
        failure = str(error)
    except Exception as error:  # selenium, OS: still one line
        failure = f"{type(error).__name__}: {str(error).strip().splitlines()[0] if str(error).strip() else ''}"
    finally:
        if failure and page is not None:
            try:
                page.screenshot("99_failure.png", whole=True)
            except Exception:
                pass
        if driver is not None:
            try:
                driver.quit()
            except Exception:
                pass
            stop_browser_leftovers(WORK)
        if lab is not None:
            stop_lab(lab, port, token)
        if log is not None:
            log.close()
    if failure:
        print(f"browser-test FAILED: {failure} (logs, screenshots: {WORK.relative_to(ROOT)}/, {screenshots})",
              file=sys.stderr, flush=True)
        return 1
    step(f"browser-test passed; screenshots in {screenshots}: {', '.join(page.shots)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""A live reading station for the tests and the benchmark: a small study, a station process, a browser.

The station runs as the user runs it (``python -m QSMReproducibilityLib.cli station ...``) in its own
process on the loopback; the browser is Debian's chromium driven by Playwright (never a browser that
Playwright downloads).
"""

from __future__ import annotations

import contextlib
import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import nibabel as nib
import numpy as np

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# Headless chromium as root; Playwright adds --headless itself and gets a fresh --user-data-dir below.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
MESA_EGL = "/usr/share/glvnd/egl_vendor.d/50_mesa.json"  # Debian's libegl-mesa0
URL_PATTERN = re.compile(r"(http://\S+/index\.html\?token=(\S+))")
VOXEL_MM = (0.72, 0.72, 2.0)  # the study's QSM voxels (230 x 172 mm over 320 x 240, 2 mm slices)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def missing_station_packages() -> str | None:
    """Why the station cannot run here (None: it can)."""
    from QSMReproducibilityLib.station import require_station_packages
    from QSMReproducibilityLib.errors import InputError

    try:
        require_station_packages()
    except InputError as exc:
        return str(exc)
    return None


def missing_browser() -> str | None:
    """Why Playwright cannot drive Debian's chromium here, or the station cannot render (None: both can)."""
    if not os.path.exists(MESA_EGL):
        return "Mesa's EGL (Debian libegl-mesa0) is not installed: the station cannot render its views"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed (station-test extra)"
    if not os.path.exists(CHROMIUM):
        return "Debian's chromium is not installed (make test installs it with apt-get as root)"
    return None


def qsm_map(shape, *, lesion_ppm: float = 0.3, seed: int = 0) -> np.ndarray:
    """A small χ map (ppm): tissue near 0, a paramagnetic lesion at the centre, CSF-like water elsewhere."""
    rng = np.random.default_rng(seed)
    chi = rng.normal(0.0, 0.01, shape).astype(np.float32)
    i, j, k = np.indices(shape)
    centre = np.array(shape) / 2.0
    lesion = ((i - centre[0]) ** 2 + (j - centre[1]) ** 2) <= (0.06 * shape[0]) ** 2
    chi[lesion] = lesion_ppm
    return chi


def make_study(root: Path, *, cases: int = 2, shape=(64, 64, 8), observers=("O1", "O2"), washout_days: int = 60):
    """A study folder with ``cases`` QSM maps on the study's voxel size and the given observers."""
    from QSMReproducibilityLib.readings import Study

    root = Path(root)
    maps = root / "maps"
    maps.mkdir(parents=True, exist_ok=True)
    affine = np.diag([*VOXEL_MM, 1.0])
    affine[:3, 3] = -0.5 * np.array(shape) * np.array(VOXEL_MM)
    with Study.create(root / "study", washout_days=washout_days) as study:
        for observer in observers:
            study.add_observer(observer)
        for index in range(cases):
            case_id = f"VA-{index + 1:03d}"
            path = maps / f"{case_id}.nii.gz"
            nib.save(nib.Nifti1Image(qsm_map(shape, seed=index), affine), path)
            study.add_case(case_id, "hematoma" if index % 2 == 0 else "calcification", path)
    return root / "study"


class Station:
    """``qsmrepro station`` in a child process; ``url`` and ``token`` once it has printed its link."""

    def __init__(self, study_dir, observer: str, *, host: str | None = None, port: int | None = None,
                 startup_s: float = 120.0, extra_env=None):
        env = dict(os.environ, **(extra_env or {}))
        env.pop("DISPLAY", None)
        where = [*(["--host", host] if host else []), *(["--port", str(port)] if port is not None else [])]
        self.process = subprocess.Popen(
            [sys.executable, "-m", "QSMReproducibilityLib.cli", "station", str(study_dir), "--observer", observer,
             *where],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, start_new_session=True)
        self.lines: list[str] = []
        found: queue.Queue = queue.Queue()

        def read():
            for line in self.process.stdout:
                self.lines.append(line)
                match = URL_PATTERN.search(line)
                if match:
                    found.put(match)

        threading.Thread(target=read, daemon=True).start()
        try:
            match = found.get(timeout=startup_s)
        except queue.Empty:
            self.stop()
            raise RuntimeError("the station printed no link:\n" + "".join(self.lines[-40:])) from None
        self.url, self.token = match.group(1), match.group(2)
        self.base = self.url.split("/index.html")[0]

    @property
    def pid(self) -> int:
        return self.process.pid

    def rss_mb(self) -> float:
        """Resident memory of the station process (MB)."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
        raise RuntimeError("no VmRSS")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=15)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


@contextlib.contextmanager
def browser():
    """Debian's chromium under Playwright, with a fresh profile."""
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="qsmrepro_chromium_") as profile, sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            profile, executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS,
            viewport={"width": 1400, "height": 820})
        try:
            yield context
        finally:
            context.close()


def voxel_count(page, segment_id: str) -> int:
    """The voxel count the page shows for a segment."""
    text = page.inner_text(f"#count-{segment_id}").strip()
    match = re.fullmatch(r"(\d+) voxels", text)
    if not match:
        raise AssertionError(f"segment {segment_id}: the page shows {text!r}")
    return int(match.group(1))


def wait_for_count_change(page, segment_id: str, before: int, timeout_ms: float = 15000) -> int:
    """Wait until the page's count of a segment differs from ``before`` (view events are not covered by
    trame's busy flag, so the count itself is awaited); returns the new count."""
    page.wait_for_function(
        "([id, before]) => { const e = document.querySelector('#count-' + id);"
        " return e && e.textContent.trim() !== before + ' voxels'; }",
        arg=[segment_id, before], timeout=timeout_ms, polling=50)  # a timer: animation frames may not run
    return voxel_count(page, segment_id)


def choose(page, selector: str) -> None:
    """Click a tool or segment and wait until the server has made it the active one."""
    page.click(selector)
    page.wait_for_selector(f"{selector}.v-btn--variant-flat, {selector}.v-list-item--active", timeout=15000)


def stroke(page, view_index: int, start_fraction, end_fraction, steps: int = 12) -> float:
    """Drag the mouse across a slice view (fractions of its width and height), button held; returns the
    ``time.perf_counter()`` at which the button was released."""
    box = page.locator(".image-display-area").nth(view_index).bounding_box()
    x0, y0 = box["x"] + start_fraction[0] * box["width"], box["y"] + start_fraction[1] * box["height"]
    x1, y1 = box["x"] + end_fraction[0] * box["width"], box["y"] + end_fraction[1] * box["height"]
    page.mouse.move(x0 - 5, y0 - 5)   # enter the view first: it renders at full rate only while hovered
    time.sleep(0.2)
    page.mouse.move(x0, y0)
    time.sleep(0.1)
    page.mouse.down()
    for step in range(1, steps + 1):
        page.mouse.move(x0 + (x1 - x0) * step / steps, y0 + (y1 - y0) * step / steps)
        time.sleep(0.03)  # the view's events are throttled; give each move its own event
    released = time.perf_counter()
    page.mouse.up()
    return released


def view_luminance(page, view_index: int, fraction, half_width: int = 1) -> np.ndarray:
    """Luminance (ITU-R BT.601 weights, 0-255) of the pixels the page shows around a point of a slice
    view (fractions of its width and height), from a screenshot of the page: what the reader sees."""
    import io

    from PIL import Image

    box = page.locator(".image-display-area").nth(view_index).bounding_box()
    x, y = box["x"] + fraction[0] * box["width"], box["y"] + fraction[1] * box["height"]
    clip = {"x": x - half_width, "y": y - half_width, "width": 2 * half_width + 1, "height": 2 * half_width + 1}
    rgb = np.asarray(Image.open(io.BytesIO(page.screenshot(clip=clip))).convert("RGB"), dtype=float)
    return rgb @ np.array([0.299, 0.587, 0.114])


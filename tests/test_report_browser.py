"""The report in a real browser: headless Chromium (Debian's ``chromium``, which ``.ci/run`` installs) renders the
page; a screenshot shows every plot drawn, and a click on a table header sorts the trials."""
from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from archkd.report import write_report
from test_report import full_results

CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no Chromium here: install Debian's chromium package "
                                                          "(.ci/run does) to check the report in a real browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--mute-audio",
         "--no-first-run", "--disable-extensions"]


def _chromium(*args: str, timeout: float = 90.0) -> str:
    done = subprocess.run([CHROMIUM, *FLAGS, *args], capture_output=True, text=True, timeout=timeout)
    return done.stdout


def _screenshot(page: Path, out: Path, height: int) -> np.ndarray:
    from PIL import Image

    _chromium(f"--screenshot={out}", f"--window-size=1200,{height}", page.as_uri())
    assert out.is_file(), "Chromium wrote no screenshot"
    return np.asarray(Image.open(out).convert("RGB")).astype(int)


def _near(img: np.ndarray, hex_colour: str, tol: int = 40) -> np.ndarray:
    rgb = [int(hex_colour[i:i + 2], 16) for i in (1, 3, 5)]
    return (np.abs(img - np.array(rgb)).sum(axis=2) < tol)


def test_plots_are_drawn_in_a_real_browser(tmp_path):
    page = write_report(tmp_path / "run", full_results())
    assert page.read_text().count('<img class="plot"') == 4
    # the budget limits latency: accuracy is plotted against latency, the budget's own axis (issue #28)
    assert 'alt="validation accuracy vs latency (ms) of the search trials"' in page.read_text()
    # where the browser laid the plots out (page coordinates at a 1200 px wide window), and the page's height
    probe = """<script>window.addEventListener("load", function () {
      var boxes = Array.prototype.map.call(document.querySelectorAll("img.plot"), function (im) {
        var r = im.getBoundingClientRect();
        return [Math.round(r.left), Math.round(r.top + window.scrollY), Math.round(r.width), Math.round(r.height),
                im.naturalWidth];
      });
      document.body.setAttribute("data-boxes", JSON.stringify(boxes));
      document.body.setAttribute("data-height", document.documentElement.scrollHeight);
    });</script></body>"""
    test_page = tmp_path / "run" / "probe.html"
    test_page.write_text(page.read_text().replace("</body>", probe))
    dom = _chromium("--dump-dom", "--window-size=1200,900", "--virtual-time-budget=5000", test_page.as_uri())
    boxes = json.loads(html.unescape(re.search(r'data-boxes="([^"]*)"', dom).group(1)))
    height = int(re.search(r'data-height="(\d+)"', dom).group(1))
    assert len(boxes) == 4 and all(b[4] > 0 for b in boxes), f"a plot image did not decode: {boxes}"
    img = _screenshot(page, tmp_path / "shot.png", height)
    for left, top, width, height_px, _ in boxes:
        assert width > 300 and height_px > 150, f"a plot is laid out too small: {width}×{height_px}"
        crop = img[top + 5:top + height_px - 5, left + 5:left + width - 5]
        ink = (np.abs(crop - 255).sum(axis=2) > 60).mean()  # share of pixels that are not (near) white
        assert 0.02 < ink < 0.6, f"plot at y={top} looks blank or filled: {ink:.3f} of its pixels are ink"
        assert len(np.unique(crop.reshape(-1, 3), axis=0)) > 50  # axes, text and series in several colours
    assert _near(img, "#2563eb").sum() > 2000  # the series colour is on screen


def test_a_header_click_sorts_the_trials_table(tmp_path):
    page = write_report(tmp_path / "run", full_results())
    # the report's own script must have attached the handlers: click "params" twice (ascending, then descending)
    probe = """<script>
      var table = document.querySelector("table.sortable");
      var th = Array.prototype.find.call(table.tHead.rows[0].cells, function (c) { return c.textContent === "params"; });
      function order() { return Array.prototype.map.call(table.tBodies[0].rows, function (r) {
          return r.cells[0].getAttribute("data-v"); }).join(","); }
      th.click(); document.body.setAttribute("data-asc", order());
      th.click(); document.body.setAttribute("data-desc", order());
      document.body.setAttribute("data-aria", th.getAttribute("aria-sort"));
    </script></body>"""
    test_page = tmp_path / "run" / "probe.html"
    test_page.write_text(page.read_text().replace("</body>", probe))
    dom = _chromium("--dump-dom", "--virtual-time-budget=5000", test_page.as_uri())
    asc = re.search(r'data-asc="([^"]*)"', dom)
    desc = re.search(r'data-desc="([^"]*)"', dom)
    assert asc and desc, "the probe did not run: no sortable table or no click handler"
    # trained trials only (the over-budget ones are folded into their own block); the FAIL trial has no params
    assert asc.group(1) == "0,1,2,3,6,5"  # params grow with the trial number; no params sorts last
    assert desc.group(1) == "6,3,2,1,0,5"
    assert 'data-aria="descending"' in dom
    assert "over-budget candidates (rejected before training; the note says why)" in dom

"""The documentation site builds with ``mkdocs build --strict``, its generated pages survive missing and partial
benchmark results, and README.md stays the short entry point (≤ 300 lines, the test command, a line per dependency)."""
from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


def _gen():
    spec = importlib.util.spec_from_file_location("gen_pages", ROOT / "docs" / "gen_pages.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # __name__ is "gen_pages": nothing is written
    return mod


def test_readme_is_short_and_keeps_the_test_command_and_the_status():
    text = README.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 300
    assert "make test" in text and ".ci/run" in text
    status = next(line for line in text.splitlines() if line.startswith("**Status"))
    for method in ("AKD", "AutoKD", "TRADE", "DistPro", "GTN"):
        assert method in text[text.index(status):text.index(status) + 400]
    assert "not implemented" not in text.lower()


def test_readme_has_a_line_for_each_dependency():
    tomllib = pytest.importorskip("tomllib")  # Python ≥ 3.11
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        names += extra
    table = README.read_text(encoding="utf-8").split("## Dependencies", 1)[1]
    rows = [line.split("|")[1] for line in table.splitlines() if line.startswith("| ")]
    missing = []
    for spec in names:
        name = re.split(r"[<>=!~ ]", spec, maxsplit=1)[0]
        if not any(name in row for row in rows):
            missing.append(name)
    assert not missing, f"README's dependency table lacks {missing}"


def test_docs_name_no_path_outside_the_repository():
    for page in list((ROOT / "docs").rglob("*.md")) + [README]:
        text = page.read_text(encoding="utf-8")
        assert "../shared" not in text, page
        assert "/work/" not in text, page


def test_benchmark_pages_survive_missing_partial_and_broken_results(tmp_path):
    gen = _gen()
    results = tmp_path / "results"
    (results / "small").mkdir(parents=True)
    (results / "precision_parity.json").write_text(json.dumps({
        "benchmark": "precision", "complete": False, "command": "python bench/precision.py --part parity",
        "table": "| student | seeds |\n|---|---|\n| resnet8 | 1 |", "args": {"data": "/somewhere/else/c.zip"}}))
    (results / "small" / "workers.json").write_text(json.dumps(
        {"median": {"1": {"workers": 1, "trials": 8, "speedup": 1.0, "efficiency": 0.8},
                    "2": {"workers": 2, "trials": 8, "speedup": 1.5, "efficiency": 0.7}}}))
    (results / "gtn_digits.json").write_text('{"summary": {"generic_vs_vanilla": ')  # still being written
    (results / "odd.json").write_text("[1, 2, 3]")
    (results / "weird.json").write_text(json.dumps({"median": "not a mapping", "table": 5, "summary": {"x": [1, {}]}}))
    pages = gen.pages(results)
    full, small, index = pages["benchmarks/full.md"], pages["benchmarks/small.md"], pages["benchmarks/index.md"]
    assert "Partial result" in full and "| resnet8 | 1 |" in full
    assert "Not run yet" in full and "bench/results/akd_digits.json" in full  # a missing file says so
    assert "Unreadable" in full and "Not a JSON object" in full  # broken files are named, not fatal
    assert "1.50× with 2 workers" in index and "| 2 | 8 |" in small
    assert "Not run yet" in small and "/somewhere" not in full
    assert "not run yet" in gen.pages(tmp_path / "nothing")["benchmarks/index.md"]


def test_config_reference_lists_every_key_with_help_and_range():
    from archkd.config import describe_keys

    page = _gen().config_page()
    for key, _tp, _default, _help in describe_keys():
        assert f"| `{key}` |" in page
    row = next(line for line in page.splitlines() if line.startswith("| `data.val_fraction` |"))
    assert "> 0" in row and "≤ 1" in row


@pytest.mark.skipif(importlib.util.find_spec("mkdocs") is None,
                    reason="the docs packages are not installed (they are in the dev extra, which CI installs)")
def test_the_site_builds_strictly(tmp_path):
    env = {**os.environ, "DISABLE_MKDOCS_2_WARNING": "true", "NO_MKDOCS_2_WARNING": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    site = tmp_path / "site"
    for page in ("benchmarks/index.html", "benchmarks/small/index.html", "benchmarks/full/index.html",
                 "reference/config/index.html", "reference/api/index.html", "reference/api/api/index.html", "reproduction/index.html",
                 "methods/akd/index.html", "methods/autokd/index.html", "methods/trade/index.html",
                 "methods/distpro/index.html", "methods/gtn/index.html", "bad-input/index.html",
                 "run-directory/index.html", "dependencies/index.html"):
        assert (site / page).is_file(), page
    assert "archkd.api.distill" in (site / "reference/api/api/index.html").read_text(encoding="utf-8")
    assert all("<!-- gen:" not in p.read_text(encoding="utf-8") for p in site.rglob("*.html"))


def test_readme_benchmark_tables_are_the_committed_results():
    """README's benchmark tables are generated (``python docs/gen_pages.py --readme``): they must be what the result
    files in bench/results give, so no number in README drifts from its JSON."""
    gen = _gen()
    text = README.read_text(encoding="utf-8")
    blocks = re.findall(r"<!-- gen:([\w.-]+) -->", text)
    assert blocks and set(blocks) <= set(gen.README_BLOCKS)
    assert gen.fill_blocks(text) == text, "run `python docs/gen_pages.py --readme` and commit README.md"


def test_every_figure_in_the_docs_comes_from_a_result_file():
    """Doc pages show benchmark figures only through ``<!-- gen:... -->`` markers filled from bench/results when the
    site is built: every marker names a known figure or a benchmark result the benchmark pages list, and no page keeps
    a hand-copied "Recorded results" section."""
    gen = _gen()
    pages = [p for p in (ROOT / "docs").rglob("*.md")]
    names = {m for p in pages for m in re.findall(r"<!-- gen:([\w.:-]+) -->", p.read_text(encoding="utf-8"))}
    assert any(n.startswith("result:") for n in names)
    for name in names:
        stem = name.removeprefix("result:")
        assert (name in {**gen.MARKERS, **gen.README_BLOCKS}) if stem == name else (stem in gen.FULL), f"unknown marker {name}"
    for p in pages:
        assert "Recorded results" not in p.read_text(encoding="utf-8"), f"{p.name} keeps hand-copied results"
    filled = gen.marked_pages()
    assert "methods/akd.md" in filled and all("<!-- gen:" not in text for text in filled.values())

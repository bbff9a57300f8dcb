"""Assemble the registered sections into one self-contained HTML page."""
from __future__ import annotations

import datetime as _dt
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .fmt import esc
from .jsonsafe import atomic_write_text, check_results, to_jsonable
from .registry import get_sections

REPORT_FILE = "report.html"

_CSS = """
:root { --fg:#1f2937; --muted:#6b7280; --line:#e5e7eb; --bg:#ffffff; --panel:#f9fafb; --accent:#2563eb;
        --best:#fff7e6; --best-line:#f59e0b; }
* { box-sizing: border-box; }
body { margin:0; color:var(--fg); background:#f3f4f6; line-height:1.45;
       font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif; }
header { background:#111827; color:#f9fafb; padding:22px 32px 18px; }
header h1 { margin:0 0 4px; font-size:24px; font-weight:650; }
header .meta { margin:0; color:#d1d5db; font-size:13px; }
header .meta code { background:#1f2937; color:#f9fafb; }
nav { background:#fff; border-bottom:1px solid var(--line); padding:8px 32px; position:sticky; top:0; z-index:1;
      font-size:13px; }
nav a { color:var(--accent); text-decoration:none; margin-right:16px; white-space:nowrap; }
nav a:hover { text-decoration:underline; }
main { max-width:1180px; margin:0 auto; padding:20px 24px 8px; }
section { background:var(--bg); border:1px solid var(--line); border-radius:10px; padding:16px 22px 18px;
          margin:0 0 18px; }
section > h2 { margin:0 0 12px; font-size:18px; font-weight:650; border-bottom:1px solid var(--line);
               padding-bottom:8px; }
h3 { font-size:14px; margin:16px 0 6px; color:#374151; text-transform:uppercase; letter-spacing:.03em; }
.columns > div > h3:first-child { margin-top:4px; }
p { margin:6px 0 10px; }
code { font:12px/1.4 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace; background:#f3f4f6;
       padding:1px 4px; border-radius:4px; word-break:break-word; }
pre { font:12px/1.45 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace; background:var(--panel);
      border:1px solid var(--line); border-radius:6px; padding:10px 12px; overflow:auto; max-height:480px; }
details { margin:12px 0 4px; }
summary { cursor:pointer; color:var(--accent); font-weight:500; }
.cards { display:flex; flex-wrap:wrap; gap:12px; margin:4px 0 8px; }
.card { flex:1 1 150px; max-width:240px; background:var(--panel); border:1px solid var(--line); border-radius:8px;
        padding:10px 14px; }
.card-label { color:var(--muted); font-size:12px; }
.card-value { font-size:22px; font-weight:650; margin-top:2px; font-variant-numeric:tabular-nums; }
.card-sub { color:var(--muted); font-size:12px; margin-top:2px; }
.columns { display:grid; grid-template-columns:repeat(auto-fit,minmax(260px,1fr)); gap:8px 28px; }
table { border-collapse:collapse; font-variant-numeric:tabular-nums; }
table.kv th { text-align:left; font-weight:500; color:var(--muted); padding:3px 16px 3px 0; vertical-align:top;
              white-space:nowrap; }
table.kv td { padding:3px 0; }
table.grid { width:100%; font-size:13px; }
table.grid th { text-align:left; font-weight:600; color:#374151; background:var(--panel);
                border-bottom:2px solid var(--line); padding:6px 10px; white-space:nowrap; }
table.grid td { border-bottom:1px solid var(--line); padding:5px 10px; vertical-align:top; }
table.grid.narrow { width:auto; min-width:min(100%, 640px); }
table.grid .num { text-align:right; white-space:nowrap; }
table.grid tbody tr:hover { background:#f8fafc; }
table.grid tr.best td { background:var(--best); }
table.grid tr.best td:first-child { box-shadow:inset 3px 0 0 var(--best-line); }
table.grid tr.total td { border-top:2px solid var(--line); }
.star { color:#b45309; font-weight:600; font-size:12px; white-space:nowrap; }
.scroll { overflow-x:auto; }
.badge { display:inline-block; padding:1px 8px; border-radius:999px; font-size:11px; font-weight:600;
         letter-spacing:.02em; background:#e5e7eb; color:#374151; }
.badge-complete { background:#dcfce7; color:#166534; }
.badge-pruned { background:#e0e7ff; color:#3730a3; }
.badge-infeasible { background:#fef3c7; color:#92400e; }
.badge-fail { background:#fee2e2; color:#991b1b; }
.bar { height:6px; background:#e5e7eb; border-radius:3px; margin-top:3px; min-width:120px; }
.bar span { display:block; height:100%; background:var(--accent); border-radius:3px; }
.bar span.over { background:#dc2626; }
figure { margin:8px 0; }
img.plot { display:block; max-width:100%; width:820px; height:auto; }
figcaption { color:var(--muted); font-size:12px; margin-top:4px; max-width:820px; }
.spec code { font-size:12.5px; }
.error { background:#fef2f2; border:1px solid #fecaca; color:#991b1b; border-radius:6px; padding:8px 12px; }
.empty { color:var(--muted); }
footer { max-width:1180px; margin:0 auto; padding:4px 24px 28px; color:var(--muted); font-size:12px; }
table.sortable th { cursor:pointer; user-select:none; }
table.sortable th[aria-sort="ascending"]::after { content:" ▲"; }
table.sortable th[aria-sort="descending"]::after { content:" ▼"; }
""".strip()

# The one script of the page (inline: the report stays a single file): a click on a header of a sortable table sorts
# its rows by the cells' data-v keys (numbers numerically, empty keys last), ascending then descending.
_SCRIPT = """
document.querySelectorAll("table.sortable").forEach(function (table) {
  var heads = table.tHead.rows[0].cells;
  Array.prototype.forEach.call(heads, function (th, col) {
    th.addEventListener("click", function () {
      var asc = th.getAttribute("aria-sort") !== "ascending";
      Array.prototype.forEach.call(heads, function (h) { h.removeAttribute("aria-sort"); });
      th.setAttribute("aria-sort", asc ? "ascending" : "descending");
      var body = table.tBodies[0];
      var rows = Array.prototype.slice.call(body.rows);
      function key(row) {
        var cell = row.cells[col];
        var v = cell.getAttribute("data-v");
        if (v === null || v === "") { return null; }
        return cell.hasAttribute("data-n") ? parseFloat(v) : v.toLowerCase();
      }
      rows.sort(function (a, b) {
        var x = key(a), y = key(b);
        if (x === null || y === null) { return (x === null) - (y === null); }
        var c = x < y ? -1 : x > y ? 1 : 0;
        return asc ? c : -c;
      });
      rows.forEach(function (r) { body.appendChild(r); });
    });
  });
});
""".strip()


def _render_sections(results: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(slug, title, html) for every section that has something to show."""
    out = []
    for section in get_sections():
        try:
            fragment = section.fn(results)
        except Exception as exc:  # a broken section must not cost the whole report
            warnings.warn(f"report section {section.name!r} failed: {type(exc).__name__}: {exc}", RuntimeWarning,
                          stacklevel=2)
            fragment = (f'<div class="error">This section could not be rendered: '
                        f"{esc(type(exc).__name__)}: {esc(exc)}</div>")
        if fragment is None or not str(fragment).strip():
            continue
        out.append((section.slug, section.title, str(fragment)))
    return out


def render_report(results: Mapping[str, Any]) -> str:
    """The report page as a string (see ``write_report``)."""
    check_results(results)
    data = to_jsonable(results)  # sections see exactly what results.json holds (NaN -> None, numpy -> int/float)
    name = str(data.get("name") or "unnamed run")

    meta = []
    if data.get("created"):
        meta.append(f"created {esc(data['created'])}")
    if data.get("command"):
        meta.append(f"<code>{esc(data['command'])}</code>")
    meta_html = f'<p class="meta">{" · ".join(meta)}</p>' if meta else ""

    rendered = _render_sections(data)
    nav = "".join(f'<a href="#section-{esc(slug)}">{esc(title)}</a>' for slug, title, _ in rendered)
    body = "\n".join(
        f'<section id="section-{esc(slug)}">\n<h2>{esc(title)}</h2>\n{html}\n</section>' for slug, title, html in rendered
    ) or '<section><p class="empty">This run has no results to show yet.</p></section>'

    try:
        from archkd import __version__ as version
    except Exception:  # pragma: no cover - only when the package metadata is broken
        version = "?"
    generated = _dt.datetime.now().isoformat(timespec="seconds")
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{esc(name)} · archkd report</title>\n<style>\n{_CSS}\n</style>\n</head>\n<body>\n"
        f"<header><h1>{esc(name)}</h1>{meta_html}</header>\n"
        + (f"<nav>{nav}</nav>\n" if nav else "")
        + f"<main>\n{body}\n</main>\n"
        f"<footer>Generated by archkd {esc(version)} at {esc(generated)}. "
        "Raw data: results.json next to this file.</footer>\n"
        f"<script>\n{_SCRIPT}\n</script>\n"
        "</body>\n</html>\n"
    )


def write_report(run_dir: str | Path, results: Mapping[str, Any]) -> Path:
    """Write ``run_dir/report.html`` atomically and return its path."""
    return atomic_write_text(Path(run_dir) / REPORT_FILE, render_report(results))

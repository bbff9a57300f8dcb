"""Formatting helpers for report sections.

Every ``fmt_*`` function and ``compact`` returns *escaped* HTML text, so its result can be put into markup
directly; anything the helpers do not recognise is shown with ``str()`` and escaped. Values that are missing
(``None``) or not numbers where a number is expected show as an em dash or as their escaped text.
"""
from __future__ import annotations

import html
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

DASH = "—"


def esc(x: Any) -> str:
    """html.escape(str(x)) with quotes escaped too; ``None`` becomes ''."""
    return html.escape("" if x is None else str(x), quote=True)


def is_num(x: Any) -> bool:
    """A finite real number (bool is not a number here)."""
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _fallback(x: Any) -> str:
    return DASH if x is None or x == "" else esc(x)


def fmt_int(x: Any) -> str:
    """12345 -> '12,345'."""
    if not is_num(x):
        return _fallback(x)
    return f"{int(round(x)):,}"


_PREFIXES = ("", "k", "M", "G", "T")


def si_split(x: float, digits: int = 3) -> tuple[float, str]:
    """(mantissa, SI prefix) of ``x``, the prefix chosen *after* rounding to ``digits`` significant digits: 999,744
    is 1.00 M, not a 999.744 k that prints as '1e+03 k'. Beyond T the mantissa grows."""
    k = 0
    while k + 1 < len(_PREFIXES) and abs(float(f"{x / 1000 ** k:.{digits}g}")) >= 1000:
        k += 1
    return x / 1000 ** k, _PREFIXES[k]


def fmt_si(x: Any, unit: str = "") -> str:
    """3 significant digits with an SI prefix (+unit): 999744 -> '1.00 M', 12345 -> '12.3 k', 1.5e9 -> '1.50 G';
    values under 1000 as plain numbers (0 -> '0', 950 -> '950')."""
    if not is_num(x):
        return _fallback(x)
    mantissa, prefix = si_split(x)
    if not prefix:
        text = f"{x:.3g}"
    elif abs(mantissa) < 1000:
        text = f"{mantissa:#.3g}".rstrip(".")  # '#' keeps the zeros of 1.50 G (and the '.' of 950., dropped)
    else:  # past the largest prefix
        text = f"{mantissa:,.0f}"
    return esc(f"{text} {prefix}{unit}".rstrip())


def fmt_pct(x: Any, digits: int = 2) -> str:
    """Accuracy as a percentage: 0.9612 -> '96.12%'. Values in (1, 100] are taken as already in percent."""
    if not is_num(x):
        return _fallback(x)
    value = x * 100 if -1.0 <= x <= 1.0 else x
    return f"{value:.{digits}f}%"


def fmt_ms(x: Any) -> str:
    """Milliseconds with 3 significant digits ('0.512 ms'), whole ones from 1000 on ('1,234 ms', not '1.23e+03 ms')."""
    if not is_num(x):
        return _fallback(x)
    return esc(f"{x:,.0f} ms" if abs(x) >= 999.5 else f"{x:.3g} ms")


def latency_median(lat: Any, runtime: Any = None) -> tuple[Any, Any]:
    """(runtime, median ms) of a latency as archkd records it: a number of ms, one measurement
    (``LatencyResult.to_dict()``: ``median_ms``, ``runtime``, ...) or ``{runtime: measurement | ms}`` (a distilled
    student's ``latency``). ``runtime`` picks the entry of a per-runtime dict (the budget's runtime), else the first is
    taken; the median is ``None`` when there is no number."""
    if is_num(lat):
        return runtime, lat
    if not isinstance(lat, Mapping) or not lat:
        return runtime, None
    if "median_ms" in lat:
        return lat.get("runtime") or runtime, lat["median_ms"] if is_num(lat["median_ms"]) else None
    key = runtime if runtime in lat else next(iter(lat))
    return key, latency_median(lat[key], key)[1]


def fmt_latency(x: Any, runtime: Any = None) -> str:
    """A latency cell: a number as ``fmt_ms``; a measurement or per-runtime dict as its median with the runtime it was
    measured on, '0.123 ms (onnxruntime)', never the raw dict."""
    if not isinstance(x, Mapping):
        return fmt_ms(x)
    rt, ms = latency_median(x, runtime)
    if ms is None:
        return DASH
    return fmt_ms(ms) + (f" ({esc(rt)})" if rt else "")


def fmt_change(x: Any) -> str:
    """A relative change as a signed whole percentage with a true minus sign: 0.39 -> '+39 %', -0.15 -> '−15 %'."""
    if not is_num(x):
        return _fallback(x)
    return f"{100 * x:+.0f} %".replace("-", "\u2212")


def fmt_seconds(x: Any) -> str:
    """4.2 -> '4.2 s'; 110 -> '1 m 50 s'; 7300 -> '2 h 01 m'."""
    if not is_num(x):
        return _fallback(x)
    if x < 60:
        return f"{x:.3g} s" if x < 10 else f"{x:.1f} s"
    s = int(round(x))
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h} h {m:02d} m" if h else f"{m} m {sec:02d} s"


def _compact_value(v: Any) -> str:
    if isinstance(v, bool) or v is None:
        return str(v)
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, (list, tuple)):
        return "[" + ",".join(_compact_value(i) for i in v) + "]"
    if isinstance(v, Mapping):
        return "{" + ", ".join(f"{k}={_compact_value(i)}" for k, i in v.items()) + "}"
    return str(v)


def compact_text(cfg: Any) -> str:
    """Unescaped one-line rendering of a config: ``{'depths': [1, 2]}`` -> ``depths=[1,2]``."""
    if isinstance(cfg, Mapping):
        return " ".join(f"{k}={_compact_value(v)}" for k, v in cfg.items())
    return _compact_value(cfg)


def compact(cfg: Any, limit: int = 120) -> str:
    """Escaped, one-line, possibly shortened config, with the full text as a tooltip when shortened."""
    if cfg is None or cfg == {}:
        return DASH
    text = compact_text(cfg)
    if len(text) <= limit:
        return f"<code>{esc(text)}</code>"
    return f'<code title="{esc(text)}">{esc(text[: limit - 1])}…</code>'


def fmt_value(x: Any) -> str:
    """Generic formatting for key/value tables."""
    if x is None:
        return DASH
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, int):
        return fmt_int(x)
    if isinstance(x, float):  # large ones whole with separators: '12,346', not '1.235e+04'
        return esc(f"{x:.4g}") if abs(x) < 1e4 else fmt_int(x)
    if isinstance(x, (list, tuple, Mapping)):
        return f"<code>{esc(compact_text(x))}</code>"
    return esc(x)


def pretty_json(x: Any) -> str:
    """Escaped, indented JSON for a <pre> block."""
    return esc(json.dumps(x, indent=2, ensure_ascii=False, default=str))


def kv_table(rows: Iterable[tuple[str, str]], cls: str = "kv") -> str:
    """Two-column table from (label, html_value) pairs; labels are escaped, values must already be HTML.

    Rows whose value is None are dropped. Returns '' when no rows are left.
    """
    body = "".join(
        f'<tr><th scope="row">{esc(k)}</th><td>{v}</td></tr>' for k, v in rows if v is not None
    )
    return f'<table class="{esc(cls)}"><tbody>{body}</tbody></table>' if body else ""


def table(
    headers: Sequence[str],
    rows: Iterable[Sequence[str]],
    *,
    row_classes: Iterable[str | None] | None = None,
    numeric: Iterable[int] = (),
    cls: str = "grid",
    sort_keys: Sequence[Sequence[Any]] | None = None,
) -> str:
    """Table with escaped headers and already-HTML cells; columns in ``numeric`` are right-aligned.

    With ``sort_keys`` (one list per row, one value per column: a number, a string, or None for "sort last") the
    table is sortable in the browser: a click on a header sorts by that column's keys (the report's one inline
    script), so ``12k`` FLOPs sort above ``950`` and ``-`` below every number."""
    numeric = set(numeric)

    def attr(i: int) -> str:
        return ' class="num"' if i in numeric else ""

    head = "".join(f'<th scope="col"{attr(i)}>{esc(h)}</th>' for i, h in enumerate(headers))
    rows = list(rows)
    classes = list(row_classes) if row_classes is not None else [None] * len(rows)
    keys = list(sort_keys) if sort_keys is not None else [None] * len(rows)
    body = []
    for row, rc, rk in zip(rows, classes, keys):
        cells = "".join(f"<td{attr(i)}{_sort_attr(rk, i)}>{c}</td>" for i, c in enumerate(row))
        row_attr = f' class="{esc(rc)}"' if rc else ""
        body.append(f"<tr{row_attr}>{cells}</tr>")
    if sort_keys is not None:
        cls += " sortable"
    return f'<table class="{esc(cls)}"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def _sort_attr(keys: Sequence[Any] | None, i: int) -> str:
    """The ``data-v`` (and, for numbers, ``data-n``) attributes the report's table sorter reads."""
    if keys is None:
        return ""
    key = keys[i] if i < len(keys) else None
    if key is None or (isinstance(key, float) and key != key):
        return ' data-v=""'
    numeric = isinstance(key, (int, float)) and not isinstance(key, bool)
    return f' data-v="{esc(key)}"' + (' data-n="1"' if numeric else "")


def card(label: str, value_html: str, sub: str | None = None) -> str:
    """A headline number tile."""
    sub_html = f'<div class="card-sub">{esc(sub)}</div>' if sub else ""
    return f'<div class="card"><div class="card-label">{esc(label)}</div><div class="card-value">{value_html}</div>{sub_html}</div>'


def details(summary: str, inner_html: str) -> str:
    """A collapsed <details> block with an escaped summary line."""
    return f"<details><summary>{esc(summary)}</summary>{inner_html}</details>"

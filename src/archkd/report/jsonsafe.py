"""JSON-safe conversion and atomic writing of ``results.json``.

Why a converter instead of a ``default=`` hook: ``json.dump`` never calls ``default`` for floats, so a NaN
would be written as the non-standard token ``NaN`` that strict parsers (browsers, jq) reject. Converting the
whole tree first makes ``results.json`` strict JSON and lets the HTML report see exactly the same values.
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import enum
import json
import math
import os
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path, PurePath
from typing import Any

__all__ = ["to_jsonable", "atomic_write_text", "write_results", "check_results", "RESULTS_FILE"]

RESULTS_FILE = "results.json"


def _float(x: float) -> float | None:
    # NaN and ±inf are not JSON; null means "no value" everywhere in the results schema.
    return x if math.isfinite(x) else None


def _is_torch_tensor(obj: Any) -> bool:
    # Look torch up lazily so this module never imports torch itself.
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(obj, torch.Tensor)


def to_jsonable(obj: Any) -> Any:
    """Return a copy of ``obj`` built only from dict/list/str/int/float/bool/None.

    numpy and torch scalars become Python numbers, arrays and tensors become (nested) lists, ``Path`` becomes
    ``str``, NaN/±inf become ``None``, tuples and sets become lists, dataclasses become dicts, enums their value,
    datetimes ISO strings, and mapping keys strings. Anything else falls back to ``str(obj)`` so that writing the
    results at the end of a long run never fails on an odd value.
    """
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, int):
        return int(obj)
    if isinstance(obj, float):
        return _float(float(obj))
    if isinstance(obj, Mapping):
        return {_key(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, (set, frozenset)):
        items = [to_jsonable(v) for v in obj]
        try:
            return sorted(items)
        except TypeError:
            return items
    if isinstance(obj, PurePath):
        return str(obj)
    if _is_torch_tensor(obj):
        t = obj.detach().cpu()
        return to_jsonable(t.item() if t.dim() == 0 else t.tolist())
    np = sys.modules.get("numpy")
    if np is not None:
        if isinstance(obj, np.generic):  # np.float32, np.int64, np.bool_, np.str_ ...
            return to_jsonable(obj.item())
        if isinstance(obj, np.ndarray):
            return to_jsonable(obj.tolist())
    if isinstance(obj, enum.Enum):
        return to_jsonable(obj.value)
    if isinstance(obj, (_dt.datetime, _dt.date, _dt.time)):
        return obj.isoformat()
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return to_jsonable(dataclasses.asdict(obj))
    if isinstance(obj, bytes):
        return obj.decode("utf-8", errors="replace")
    return str(obj)


def _key(k: Any) -> str:
    k = to_jsonable(k)
    return k if isinstance(k, str) else json.dumps(k)


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` via a temporary file in the same folder and ``os.replace``.

    A reader (or a crash) never sees a half-written file: it sees the old file or the new one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:  # mkstemp creates 0600 files; keep an existing file's mode, else use the usual 0644
        mode = path.stat().st_mode & 0o777
    except OSError:
        mode = 0o644
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return path


def check_results(results: Any) -> None:
    """Raise if ``results`` is not a mapping with a ``"name"`` (the only required key)."""
    if not isinstance(results, Mapping):
        raise TypeError(f"results must be a dict, got {type(results).__name__}")
    if "name" not in results:
        raise ValueError('results must have a "name" key (the run name); every other key is optional')


def write_results(run_dir: str | Path, results: Mapping[str, Any]) -> Path:
    """Write ``run_dir/results.json`` (indent=2, strict JSON) atomically and return its path."""
    check_results(results)
    text = json.dumps(to_jsonable(results), indent=2, ensure_ascii=False, allow_nan=False) + "\n"
    return atomic_write_text(Path(run_dir) / RESULTS_FILE, text)

"""Run directories (``runs/<name>/``): one owner at a time, one verb's results each, file sets replaced whole.

Why: two processes given the same run name used to write one directory together (the second resumed the first's
half-written ``last.pt``; ``metrics.csv`` and ``results.json`` ended with duplicated rows), and a verb run under
another verb's run name replaced that run's ``results.json`` and report without a word.

- ``claim(run, verb, writes, shared)``: an ``fcntl`` lock on ``run/.archkd.lock`` held until ``release``; a second
  process is refused in one line naming the holder's pid. Search workers of one study take it *shared*: they
  cooperate through the study's leases by design, while any other verb excludes them. A verb that writes the run's
  ``results.json`` (``writes``) also records itself in the lock file, and a later verb of another kind that would
  write there is refused: each run directory holds the results of one verb.
- Calls nested inside a verb (the demo's search, a search's top-k distillations) run in their caller's directory
  and claim nothing.
- ``replace_dir(final, build)``: write a set of files into a temporary sibling folder and rename it into place, so a
  crash leaves the old set or the new one, never a mix.
"""
from __future__ import annotations

import fcntl
import json
import os
import shutil
from pathlib import Path
from typing import IO, Callable

from archkd.errors import ArchkdError

LOCK_FILE = ".archkd.lock"


class _Claim:
    """A held run directory: its open lock file, the verb, whether that verb writes results, nesting depth."""

    def __init__(self, f: IO[str], verb: str, writes: bool, owner: str | None) -> None:
        self.f, self.verb, self.writes, self.owner, self.depth = f, verb, writes, owner, 1

    def write(self) -> None:
        self.f.seek(0)
        self.f.truncate()
        self.f.write(json.dumps({"verb": self.owner, "pid": os.getpid()}) + "\n")
        self.f.flush()


_held: dict[Path, _Claim] = {}


def _owner(run: Path) -> dict:
    """What the lock file (or, for runs made before it existed, ``results.json``) says of the run's owner."""
    try:
        found = json.loads((run / LOCK_FILE).read_text() or "{}")
        if isinstance(found, dict) and found.get("verb"):
            return found
    except (OSError, ValueError):
        pass
    try:
        command = json.loads((run / "results.json").read_text()).get("command")
        return {"verb": command} if isinstance(command, str) else {}
    except (OSError, ValueError, AttributeError):
        return {}


def claim(run: Path, verb: str, writes: bool = True, shared: bool = False) -> None:
    """Make ``run`` this process's for ``verb`` (see the module docstring); nested claims of a held run are free.

    The verb is recorded as the run's owner only by ``own``, once the run's inputs are accepted: a command refused
    for bad input leaves the run as it was."""
    key = run.resolve()
    if key in _held:
        _held[key].depth += 1
        return
    try:
        run.mkdir(parents=True, exist_ok=True)
        f = open(run / LOCK_FILE, "a+", encoding="utf-8")
    except OSError as e:
        raise ArchkdError(f"cannot write the run directory {run} ({e.strerror or type(e).__name__})",
                          "give a writable folder with --runs-dir (or runs_dir=...)") from None
    try:
        fcntl.flock(f, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
    except BlockingIOError:
        f.close()
        holder = json.loads((run / LOCK_FILE).read_text() or "{}") if (run / LOCK_FILE).is_file() else {}
        raise ArchkdError(f"run '{run}' is in use by process {holder.get('pid', '?')}",
                          "wait for it to finish, or give this run another --name") from None
    owner = _owner(run).get("verb")
    if writes and owner not in (None, verb):
        fcntl.flock(f, fcntl.LOCK_UN)
        f.close()
        raise ArchkdError(f"run '{run}' holds the results of '{owner}', which '{verb}' would replace",
                          "give this run another --name")
    _held[key] = c = _Claim(f, verb, writes, owner)
    c.write()


def own(run: Path) -> None:
    """Record the verb holding ``run`` as its owner (if it writes the run's results): its inputs were accepted."""
    c = _held.get(run.resolve())
    if c is not None and c.writes and c.owner != c.verb:
        c.owner = c.verb
        c.write()


def release(run: Path) -> bool:
    """Undo one ``claim`` of ``run``; the lock goes with the outermost, which returns True."""
    key = run.resolve()
    c = _held.get(key)
    if c is None:
        return False
    c.depth -= 1
    if c.depth:
        return False
    del _held[key]
    fcntl.flock(c.f, fcntl.LOCK_UN)
    c.f.close()
    return True


def replace_dir(final: Path, build: Callable[[Path], None]) -> None:
    """``build(tmp)`` writes the new set into a temporary sibling of ``final``, which then takes ``final``'s place.

    The old set is moved aside before the new one is renamed in and removed after, so at every instant ``final``
    is the old complete set or the new one (or, for the instant between the two renames, absent with the old set
    beside it as ``<final>.old-<pid>``); a failed ``build`` leaves ``final`` untouched.
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}")
    old = final.with_name(f".{final.name}.old-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        build(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if final.exists():
        os.replace(final, old)
    os.replace(tmp, final)
    shutil.rmtree(old, ignore_errors=True)


def run_of(path: Path) -> Path:
    """The run directory a file of a run lies in (``runs/x/student/best.pt``, ``runs/x/final/01_trial0003/best.pt``
    -> ``runs/x``): the nearest folder above it holding a run's lock file or ``config.yaml``; else its own folder."""
    path = Path(path).resolve()
    for parent in list(path.parents)[:4]:
        if (parent / LOCK_FILE).is_file() or (parent / "config.yaml").is_file():
            return parent
    return path.parent

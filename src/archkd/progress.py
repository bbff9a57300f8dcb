"""Progress of long work: a live display on a terminal, plain lines at most every ``every`` seconds elsewhere.

Why both: on a terminal a user wants to see trial k of N, the epoch, images/s and when the trial and the search will
end, updated in place; in CI logs and files a redrawn display is noise, so the same facts come as one line every 15 s
at most. Either way a training run is never silent for longer than ``every`` seconds. ``fit`` calls ``step`` once
per optimiser step (a clock read: cheap); the search loop calls ``search`` when a trial starts or ends.
"""
from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    import torch


def _dur(seconds: float) -> str:
    s = int(max(0, seconds))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


class Progress:
    """Reports training and search progress through ``log`` (plain) or a rich live line (``live=True``)."""

    def __init__(self, log: Callable[[str], None] | None, every: float = 15.0, live: bool | None = None) -> None:
        self.log, self.every = log, every
        self.live = (sys.stdout.isatty() if live is None else live) and log is not None
        self._bar = None
        self.trial: tuple[int, int] | None = None  # (this trial's position, total)
        self.number: int | None = None  # the trial's number in the study, as the trial table shows it
        self.trial_times: list[float] = []
        self._last = time.perf_counter()
        self._label = ""

    # search level
    def search(self, done: int, total: int, number: int | None = None) -> None:
        """The search has ``done`` of ``total`` trials; the next one, trial ``number`` of the study, starts now."""
        self.trial, self.number = (done + 1, total), number

    def trial_done(self, seconds: float) -> None:
        self.trial_times.append(seconds)

    # training level
    def start(self, epochs: int, images_per_epoch: int, label: str = "") -> None:
        """A training run of ``epochs`` epochs over ``images_per_epoch`` images starts (``label``: what it trains)."""
        self._label, self.epochs, self.images = label, epochs, images_per_epoch
        self._last = time.perf_counter()

    def step(self, epoch: int, images_in_epoch: int, images_per_s: float, loss: "torch.Tensor | float") -> None:
        now = time.perf_counter()
        if now - self._last < (0.5 if self.live else self.every):
            return
        self._last = now
        loss = float(loss)  # a device sync, so only when a line is due
        left = (self.epochs - epoch - 1) * self.images + (self.images - images_in_epoch)
        trial_eta = left / max(images_per_s, 1e-9)
        parts = []
        if self.trial:
            k, n = self.trial
            parts.append(f"trial #{self.number} ({k}/{n})" if self.number is not None else f"trial {k}/{n}")
        parts += [f"epoch {epoch + 1}/{self.epochs}", f"{images_in_epoch}/{self.images} images",
                  f"{images_per_s:.0f} img/s", f"loss {loss:.4f}", f"eta {_dur(trial_eta)}"]
        if self.trial and self.trial_times:
            k, n = self.trial
            mean = sum(self.trial_times) / len(self.trial_times)
            parts.append(f"search eta {_dur(trial_eta + (n - k) * mean)}")
        line = (f"{self._label}: " if self._label else "") + " · ".join(parts)
        if self.live:
            self._draw(line)
        else:
            self.log("  " + line)

    def end(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None

    def _draw(self, line: str) -> None:
        from rich.live import Live
        from rich.text import Text

        if self._bar is None:
            self._bar = Live(Text(line), refresh_per_second=4, transient=True)
            self._bar.start()
        else:
            self._bar.update(Text(line))

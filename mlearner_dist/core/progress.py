"""Progress reporting for long loops: a live line on a terminal, sparse log lines elsewhere.

On a TTY, :class:`Progress` redraws one line on stderr (``desc: 40/100 (40%) 12.3 s, about 18 s
left``); when stderr
is not a TTY (batch jobs, Spark drivers, CI) it logs at INFO about every 10 % so logs stay quiet.
A :class:`Progress` opened while another one is running (the folds and t-SNE iterations of a
selection re-run inside a null replicate) counts silently: only the outermost loop reports.
:func:`progress_callback` gives the ``callable(str)`` that core functions accept for per-step
messages (``progress=...``).
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable
from contextvars import ContextVar
from types import TracebackType
from typing import Any, TextIO

from mlearner_dist.exceptions import MLearnerError

logger = logging.getLogger(__name__)

#: How many :class:`Progress` contexts are open in this thread of control.
_OPEN: ContextVar[int] = ContextVar("mlearner_dist_progress_open", default=0)


def _is_tty(stream: TextIO) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty()) if callable(isatty) else False
    except (ValueError, OSError):
        return False


class Progress:
    """Context manager counting steps of a loop of known length.

    Parameters
    ----------
    total : int
        Number of steps (>= 0).
    desc : str
        What is being done, e.g. ``"null replicates"``.
    stream : text stream, optional
        Where the live line goes (default ``sys.stderr``).
    live : bool, optional
        Force the live line on (True) or off (False); default: whether ``stream`` is a TTY.
    every : float, default 0.1
        When not live, log at INFO each time another ``every`` fraction of ``total`` is done.

    Notes
    -----
    Entered inside another open :class:`Progress`, it is silent (``silent`` is True): it counts
    but neither logs nor draws, so a loop nested in a reported loop adds no lines.

    Examples
    --------
    >>> with Progress(3, "replicates", live=False) as bar:
    ...     for _ in range(3):
    ...         bar.update()
    """

    def __init__(
        self,
        total: int,
        desc: str,
        *,
        stream: TextIO | None = None,
        live: bool | None = None,
        every: float = 0.1,
    ) -> None:
        if isinstance(total, bool) or not isinstance(total, int) or total < 0:
            raise MLearnerError(f"Progress: total must be a non-negative integer, got {total!r}")
        if not 0 < every <= 1:
            raise MLearnerError(f"Progress: every must be in (0, 1], got {every!r}")
        self.total = total
        self.desc = str(desc)
        self.stream = stream if stream is not None else sys.stderr
        if live is None:
            live = _is_tty(self.stream) and not os.environ.get("MLEARNER_QUIET")
        self.live = bool(live)
        self.every = every
        self.done = 0
        self.silent = False
        self._start = 0.0
        self._logged_bucket = 0
        self._last_draw = 0.0
        self._token: Any = None

    def __enter__(self) -> Progress:
        self._start = time.monotonic()
        self._logged_bucket = 0
        depth = _OPEN.get()
        self.silent = depth > 0
        self._token = _OPEN.set(depth + 1)
        if not self.live and not self.silent:
            logger.info("%s: starting %d steps", self.desc, self.total)
        return self

    def _bucket(self) -> int:
        # how many whole ``every`` fractions of the total are done (the last one: all done)
        if self.total == 0 or self.done >= self.total:
            return round(1 / self.every) + 1
        return int(self.done / self.total / self.every + 1e-9)

    @property
    def elapsed(self) -> float:
        """Seconds since the context was entered."""
        return time.monotonic() - self._start

    def line(self, message: str | None = None) -> str:
        """The status line for the current count."""
        pct = 100.0 * self.done / self.total if self.total else 100.0
        text = f"{self.desc}: {self.done}/{self.total} ({pct:.0f}%) {self.elapsed:.1f} s"
        if 0 < self.done < self.total:
            left = self.elapsed / self.done * (self.total - self.done)
            text += f", about {left:.0f} s left"
        return f"{text} - {message}" if message else text

    def update(self, n: int = 1, message: str | None = None) -> None:
        """Count ``n`` more steps done; redraw or log as configured."""
        if n < 0:
            raise MLearnerError(f"Progress.update: n must be >= 0, got {n!r}")
        self.done = min(self.total, self.done + n)
        if self.silent:
            return
        if self.live:
            now = time.monotonic()
            if now - self._last_draw >= 0.1 or self.done >= self.total:
                self._last_draw = now
                self.stream.write("\r\033[K" + self.line(message))
                self.stream.flush()
        else:
            bucket = self._bucket()
            if bucket > self._logged_bucket:
                self._logged_bucket = bucket
                logger.info("%s", self.line(message))

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._token is not None:
            _OPEN.reset(self._token)
            self._token = None
        if self.silent:
            return
        status = "failed" if exc_type is not None else "done"
        if self.live:
            self.stream.write("\r\033[K" + self.line(status) + "\n")
            self.stream.flush()
        else:
            logger.info(
                "%s: %s after %d/%d steps in %.1f s",
                self.desc,
                status,
                self.done,
                self.total,
                self.elapsed,
            )


def progress_callback(desc: str, *, stream: TextIO | None = None) -> Callable[[str], None]:
    """A ``callable(message)`` reporting per-step messages of a core function.

    Each call logs ``"<desc>: <message>"`` at INFO and, on a TTY, redraws one status line on
    ``stream`` (default stderr) with the elapsed time.

    Parameters
    ----------
    desc : str
        Prefix naming the task, e.g. ``"profile"``.
    stream : text stream, optional
        Where the live line goes (default ``sys.stderr``).

    Returns
    -------
    callable
        Takes one ``str`` and returns None.
    """
    out = stream if stream is not None else sys.stderr
    live = _is_tty(out) and not os.environ.get("MLEARNER_QUIET")
    start = time.monotonic()

    def report(message: str) -> None:
        logger.info("%s: %s", desc, message)
        if live:
            out.write(f"\r\033[K{desc}: {message} ({time.monotonic() - start:.1f} s)")
            out.flush()

    return report


__all__ = ["Progress", "progress_callback"]

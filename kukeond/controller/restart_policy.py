"""Container restart policies: what ``restartPolicy`` means, and the per-container backoff.

The reference stores ``restartPolicy`` as a free-form string and gives it no
effect. kukeond keeps accepting any string (documents already stored, or
sent by clients, stay valid) and interprets the Docker values, case and
surrounding blanks ignored:

* ``""``, ``no``: never restart (the reference's behaviour);
* ``always``, ``unless-stopped``: restart whenever the process exits (a
  user's stop removes the container, so it is never restarted: that is the
  "unless stopped" part);
* ``on-failure``, ``on-failure:N`` (N ≥ 1): restart after a non-zero exit
  code (a signal counts as 128+N), at most N times.

Any other value is treated as ``no``; the reconciler logs a warning once
per container and value.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

NO = "no"
ALWAYS = "always"
ON_FAILURE = "on-failure"

BACKOFF_MIN = 0.1
"""Seconds before the first restart of a container."""
BACKOFF_MAX = 30.0
"""Longest wait between two restarts of one container."""
BACKOFF_RESET_AFTER = 10.0
"""A container that ran this long before exiting starts again from :data:`BACKOFF_MIN`."""


@dataclass(frozen=True)
class RestartPolicy:
    """A parsed policy: ``mode`` is ``no``, ``always`` or ``on-failure``."""

    mode: str = NO
    max_restarts: int | None = None

    @property
    def restarts(self) -> bool:
        """Whether this policy ever restarts a container."""
        return self.mode != NO

    def wants_restart(self, exit_code: int, restart_count: int) -> bool:
        """Whether a container that exited with ``exit_code`` after ``restart_count`` restarts
        is started again."""
        if self.mode == ALWAYS:
            return True
        if self.mode != ON_FAILURE or exit_code == 0:
            return False
        return self.max_restarts is None or restart_count < self.max_restarts


_NEVER = RestartPolicy()
_FIXED = {
    "": _NEVER,
    NO: _NEVER,
    ALWAYS: RestartPolicy(ALWAYS),
    "unless-stopped": RestartPolicy(ALWAYS),
    ON_FAILURE: RestartPolicy(ON_FAILURE),
}


def parse_policy(text: str | None) -> RestartPolicy | None:
    """The policy ``text`` names, or None when it is not a value kukeond knows."""
    value = (text or "").strip().lower()
    fixed = _FIXED.get(value)
    if fixed is not None:
        return fixed
    head, sep, count = value.partition(":")
    if head == ON_FAILURE and sep and count.isdigit() and int(count) >= 1:
        return RestartPolicy(ON_FAILURE, int(count))
    return None


@dataclass
class _Track:
    delay: float = BACKOFF_MIN
    started: float | None = None
    due: float | None = None


@dataclass
class Backoff:
    """Per-container restart timing (in memory; a daemon restart starts afresh).

    Times are the clock's seconds. The first exit seen is due after
    :data:`BACKOFF_MIN`; every restart doubles the next wait up to
    :data:`BACKOFF_MAX`; a container that ran :data:`BACKOFF_RESET_AFTER`
    seconds before exiting starts from the minimum again.
    """

    tracks: dict[Any, dict[str, _Track]] = field(default_factory=dict)

    def _track(self, cell: Any, container: str) -> _Track:
        return self.tracks.setdefault(cell, {}).setdefault(container, _Track())

    def wait(self, cell: Any, container: str, now: float) -> float:
        """Seconds until the exited ``container`` may restart (0 or less: now)."""
        track = self._track(cell, container)
        if track.due is None:
            if track.started is not None and now - track.started >= BACKOFF_RESET_AFTER:
                track.delay = BACKOFF_MIN
            track.due = now + track.delay
            track.delay = min(track.delay * 2, BACKOFF_MAX)
        return track.due - now

    def restarted(self, cell: Any, container: str, now: float) -> None:
        """Record that ``container`` was started again at ``now``."""
        track = self._track(cell, container)
        track.started = now
        track.due = None

    def failed(self, cell: Any, container: str, now: float) -> float:
        """Record a restart attempt that failed; returns the seconds until the next one."""
        track = self._track(cell, container)
        track.due = None
        track.started = None
        return self.wait(cell, container, now)

    def forget(self, cell: Any) -> None:
        """Drop what is known about the containers of ``cell``."""
        self.tracks.pop(cell, None)

"""The one way a task is stopped: SIGTERM, our own grace timer, SIGKILL, wait.

Every stop goes through :func:`stop_task`: a container or cell stop, a
kill, a delete, a purge, a realm drain and the reconciler's wind-down. The
grace period is timed on the daemon's reactor, never inferred from how
containerd words a timed-out ``Tasks.Wait``: containerd 1.6 answers an
expired wait with code UNKNOWN and ``context deadline exceeded: unknown``
about two times in three, so a stop that trusted the error's code would
never escalate.
"""

from __future__ import annotations

import signal
from typing import Any

from twisted.internet import defer, task

from kukeond.containerd import errors as cerrors
from kukeond.containerd.interface import IContainerd

STOP_GRACE = 5.0
"""Seconds a workload gets between SIGTERM and SIGKILL when stopped."""
DELETE_GRACE = 10.0
"""Seconds a workload gets between SIGTERM and SIGKILL when deleted or drained."""
KILL_WAIT = 5.0
"""Seconds a task gets to be reaped after SIGKILL before the stop fails."""
POLL_INTERVAL = 0.1
"""Seconds between task state checks when ``Tasks.Wait`` cannot be used."""
WAIT_SLACK = 5.0
"""Extra seconds on the ``Tasks.Wait`` deadline, so our timer always ends the wait first."""


class TaskWouldNotDie(cerrors.ContainerdError):
    """A task still ran :data:`KILL_WAIT` seconds after SIGKILL."""


async def signal_task(containerd: IContainerd, namespace: str, cid: str, signum: int) -> bool:
    """Send ``signum`` to every process of ``cid``'s task; False when it has already ended."""
    try:
        await containerd.kill_task(namespace, cid, signal=signum, all=True)
    except cerrors.NotFound:
        return False
    return True


async def exited_within(
    containerd: IContainerd, clock: Any, namespace: str, cid: str, seconds: float
) -> bool:
    """Whether ``cid``'s task ends (or is gone) within ``seconds`` on ``clock``.

    ``Tasks.Wait`` is only the fast path. When our timer ends it, the task's
    own state decides; when it fails early in any other way, the task's
    state is polled until the timer runs out.
    """
    deadline = clock.seconds() + seconds
    waiting = containerd.wait_task(namespace, cid, seconds + WAIT_SLACK)
    waiting.addTimeout(seconds, clock)
    try:
        await waiting
        return True
    except cerrors.NotFound:
        return True
    except defer.TimeoutError:
        return not await _still_running(containerd, namespace, cid)
    except cerrors.ContainerdError:
        pass
    while await _still_running(containerd, namespace, cid):
        left = deadline - clock.seconds()
        if left <= 0:
            return False
        await task.deferLater(clock, min(POLL_INTERVAL, left), lambda: None)
    return True


async def _still_running(containerd: IContainerd, namespace: str, cid: str) -> bool:
    try:
        info = await containerd.task_state(namespace, cid)
    except cerrors.NotFound:
        return False
    return info.status != "stopped"


async def stop_task(
    containerd: IContainerd, clock: Any, namespace: str, cid: str, grace: float
) -> None:
    """Stop ``cid``'s task: SIGTERM and ``grace`` seconds, then SIGKILL and wait.

    ``grace`` 0 sends SIGKILL at once. A task that is already gone is
    stopped. Raises :class:`TaskWouldNotDie` when SIGKILL did not end it.
    """
    if grace > 0:
        if not await signal_task(containerd, namespace, cid, signal.SIGTERM):
            return
        if await exited_within(containerd, clock, namespace, cid, grace):
            return
    if not await signal_task(containerd, namespace, cid, signal.SIGKILL):
        return
    if not await exited_within(containerd, clock, namespace, cid, KILL_WAIT):
        raise TaskWouldNotDie(f"task {cid} is still running {KILL_WAIT:g}s after SIGKILL")


async def stop_if_running(
    containerd: IContainerd, clock: Any, namespace: str, cid: str, grace: float
) -> bool:
    """Stop ``cid``'s task unless it has ended or never started; False when it has none."""
    try:
        task = await containerd.task_state(namespace, cid)
    except cerrors.NotFound:
        return False
    if task.status not in ("stopped", "created"):
        await stop_task(containerd, clock, namespace, cid, grace)
    return True


async def delete_stopped(containerd: IContainerd, namespace: str, cid: str, had_task: bool) -> bool:
    """Delete the ended task, then the container and its snapshot; False when neither was there."""
    if had_task:
        try:
            await containerd.delete_task(namespace, cid)
        except cerrors.NotFound:
            pass
    try:
        await containerd.delete_container(namespace, cid, True)
    except cerrors.NotFound:
        return had_task
    return True


async def remove_container(
    containerd: IContainerd, clock: Any, namespace: str, cid: str, grace: float
) -> bool:
    """Stop ``cid``'s task, then delete task, container and snapshot; False when absent."""
    had_task = await stop_if_running(containerd, clock, namespace, cid, grace)
    return await delete_stopped(containerd, namespace, cid, had_task)

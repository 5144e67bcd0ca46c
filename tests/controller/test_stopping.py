"""The one stop path: SIGTERM, our own grace timer, SIGKILL; fake runtime and a clock."""

from __future__ import annotations

import signal

from twisted.internet import defer, task
from twisted.trial.unittest import TestCase

from kukeond.containerd import errors as cerrors
from kukeond.controller import stopping
from tests.support.fake_containerd import FakeContainerd
from tests.support.image import busybox_image

NS = "stop-test"
CID = "s_k_c_w"


class RecordingContainerd(FakeContainerd):
    """The fake, recording signals; ``wait_error`` makes Tasks.Wait fail at once."""

    def __init__(self, wait_error: Exception | None = None) -> None:
        super().__init__()
        self.signals: list[int] = []
        self.wait_error = wait_error

    def kill_task(self, namespace, container_id, signal=15, all=True):
        self.signals.append(signal)
        return super().kill_task(namespace, container_id, signal=signal, all=all)

    def wait_task(self, namespace, container_id, timeout=10.0):
        if self.wait_error is not None:
            return defer.fail(self.wait_error)
        return super().wait_task(namespace, container_id, timeout)


class StopTaskTests(TestCase):
    def setUp(self):
        self.clock = task.Clock()

    async def running_task(self, client):
        image = busybox_image()
        await client.import_image(NS, image.oci_tar)
        await client.create_container(NS, CID, image.ref, {})
        await client.create_task(NS, CID)
        await client.start_task(NS, CID)

    def stop(self, client, grace):
        return defer.Deferred.fromCoroutine(stopping.stop_task(client, self.clock, NS, CID, grace))

    async def test_term_is_enough_for_a_willing_task(self):
        client = RecordingContainerd()
        await self.running_task(client)
        await self.stop(client, 5.0)
        self.assertEqual(client.signals, [signal.SIGTERM])
        self.assertEqual((await client.task_state(NS, CID)).exit_status, 128 + signal.SIGTERM)

    async def test_a_task_ignoring_term_is_killed_when_our_grace_ends(self):
        client = RecordingContainerd()
        await self.running_task(client)
        client.ignore_signal(NS, CID, signal.SIGTERM)
        stopping_now = self.stop(client, 5.0)
        self.clock.advance(4.9)
        self.assertNoResult(stopping_now)
        self.assertEqual(client.signals, [signal.SIGTERM])
        self.clock.advance(0.1)
        await stopping_now
        self.assertEqual(client.signals, [signal.SIGTERM, signal.SIGKILL])
        self.assertEqual((await client.task_state(NS, CID)).status, "stopped")

    async def test_containerd_wording_of_a_timeout_does_not_matter(self):
        # containerd 1.6 answers an expired wait with UNKNOWN and this text.
        odd = cerrors.ContainerdError("Tasks.Wait: context deadline exceeded: unknown", "UNKNOWN")
        client = RecordingContainerd(wait_error=odd)
        await self.running_task(client)
        client.ignore_signal(NS, CID, signal.SIGTERM)
        stopping_now = self.stop(client, 1.0)
        self.clock.pump([0.1] * 9)
        self.assertNoResult(stopping_now)
        self.assertEqual(client.signals, [signal.SIGTERM])
        self.clock.pump([0.1] * 2)
        await stopping_now
        self.assertEqual(client.signals, [signal.SIGTERM, signal.SIGKILL])

    async def test_grace_zero_kills_at_once(self):
        client = RecordingContainerd()
        await self.running_task(client)
        await self.stop(client, 0.0)
        self.assertEqual(client.signals, [signal.SIGKILL])

    async def test_an_ended_task_is_stopped(self):
        client = RecordingContainerd()
        await self.running_task(client)
        client.exit_task(NS, CID, 0)
        await self.stop(client, 5.0)
        self.assertEqual(client.signals, [signal.SIGTERM])

    async def test_a_task_that_survives_sigkill_fails_the_stop(self):
        client = RecordingContainerd()
        await self.running_task(client)
        client.ignore_signal(NS, CID, signal.SIGTERM)
        client.ignore_signal(NS, CID, signal.SIGKILL)
        stopping_now = self.stop(client, 1.0)
        self.clock.pump([0.5] * 2 + [1.0] * 5)
        failure = self.failureResultOf(stopping_now, stopping.TaskWouldNotDie)
        self.assertIn("after SIGKILL", str(failure.value))

import grp
import os
import shutil
import socket
import stat
import subprocess
import sys

from twisted.internet import defer, reactor
from twisted.trial.unittest import TestCase

from kukeond.client import KukeonClient
from kukeond.listener import ListenerError, ListenerService, remove_stale_socket
from kukeond.rpc.dispatch import Dispatcher
from kukeond.rpc.protocol import KukeonFactory
from tests.rpc.fakes import TYPES, make_handlers


def short_tmpdir(test):
    """A temp dir with a short path (unix socket paths are limited to 108 bytes)."""
    import shutil
    import tempfile

    path = tempfile.mkdtemp(prefix="kd-")
    test.addCleanup(shutil.rmtree, path, True)
    return path


class ListenerTests(TestCase):
    def setUp(self):
        self.dir = short_tmpdir(self)
        self.sock = os.path.join(self.dir, "run", "kukeond.sock")
        self.pid = os.path.join(self.dir, "run", "kukeond.pid")
        self.pending = []
        self.factory = KukeonFactory(Dispatcher(make_handlers(pending=self.pending), TYPES))

    def start(self, gid=0):
        svc = ListenerService(reactor, self.factory, self.sock, self.pid, socket_gid=gid)
        svc.privilegedStartService()
        svc.startService()
        self.addCleanup(lambda: svc.running and svc.stopService())
        return svc

    def test_socket_mode_0600_and_pid_file(self):
        self.start()
        st = os.stat(self.sock)
        self.assertTrue(stat.S_ISSOCK(st.st_mode))
        self.assertEqual(st.st_mode & 0o777, 0o600)
        self.assertEqual(os.stat(os.path.dirname(self.sock)).st_mode & 0o777, 0o755)
        with open(self.pid) as f:
            self.assertEqual(f.read(), f"{os.getpid()}\n")
        self.assertEqual(os.stat(self.pid).st_mode & 0o777, 0o644)

    def test_socket_gid_mode_0660(self):
        gid = grp.getgrnam("nogroup").gr_gid
        self.start(gid=gid)
        st = os.stat(self.sock)
        self.assertEqual((st.st_uid, st.st_gid, st.st_mode & 0o777), (0, gid, 0o660))

    def _connect_as_nobody(self):
        code = (
            "import os, socket, sys\n"
            "os.setgroups([]); os.setgid(65534); os.setuid(65534)\n"
            "s = socket.socket(socket.AF_UNIX)\n"
            "try:\n    s.connect(sys.argv[1])\nexcept PermissionError:\n    sys.exit(13)\n"
        )
        return subprocess.run([sys.executable, "-c", code, self.sock]).returncode

    def test_non_root_access_follows_gid(self):
        if os.getuid() != 0:
            self.skipTest("needs root to switch to an unprivileged uid")
        os.chmod(self.dir, 0o755)
        self.start(gid=0)
        self.assertEqual(self._connect_as_nobody(), 13)

    def test_non_root_member_of_gid_connects(self):
        if os.getuid() != 0:
            self.skipTest("needs root to switch to an unprivileged uid")
        os.chmod(self.dir, 0o755)
        self.start(gid=grp.getgrnam("nogroup").gr_gid)
        self.assertEqual(self._connect_as_nobody(), 0)

    @defer.inlineCallbacks
    def test_stop_removes_socket_and_pid(self):
        svc = self.start()
        yield svc.stopService()
        self.assertFalse(os.path.exists(self.sock))
        self.assertFalse(os.path.exists(self.pid))

    @defer.inlineCallbacks
    def test_stop_after_the_run_directory_was_removed(self):
        svc = self.start()
        shutil.rmtree(os.path.dirname(self.sock))
        yield svc.stopService()
        self.assertFalse(svc.running)

    def test_stale_pid_file_replaced(self):
        os.makedirs(os.path.dirname(self.pid))
        with open(self.pid, "w") as f:
            f.write("999999\n")
        self.start()
        with open(self.pid) as f:
            self.assertEqual(f.read(), f"{os.getpid()}\n")

    def test_stale_socket_without_daemon_is_removed(self):
        os.makedirs(os.path.dirname(self.sock))
        s = socket.socket(socket.AF_UNIX)
        s.bind(self.sock)
        s.close()  # a socket file nobody listens on, as after SIGKILL
        self.start()
        self.assertEqual(os.stat(self.sock).st_mode & 0o777, 0o600)

    def test_live_daemon_is_not_replaced(self):
        os.makedirs(os.path.dirname(self.sock))
        s = socket.socket(socket.AF_UNIX)
        s.bind(self.sock)
        s.listen(1)
        self.addCleanup(s.close)
        e = self.assertRaises(ListenerError, remove_stale_socket, self.sock)
        self.assertIn("already listening", str(e))
        self.assertTrue(os.path.exists(self.sock))

    def test_regular_file_is_not_replaced(self):
        os.makedirs(os.path.dirname(self.sock))
        open(self.sock, "w").close()
        self.assertRaises(ListenerError, remove_stale_socket, self.sock)

    @defer.inlineCallbacks
    def test_stop_lets_slow_request_finish(self):
        svc = self.start()
        client = KukeonClient(reactor, f"unix://{self.sock}")
        self.addCleanup(client.close)
        slow = client.call("Slow", {"Value": 42})
        while not self.pending:
            yield deferLater(0.01)
        stopping = svc.stopService()
        self.assertNoResult(stopping)
        reactor.callLater(0.05, self.pending[0].callback, None)
        reply = yield slow
        self.assertEqual(reply["Value"], 42)
        yield stopping
        self.assertFalse(os.path.exists(self.sock))
        self.assertFalse(os.path.exists(self.pid))


def deferLater(seconds):
    from twisted.internet.task import deferLater as later

    return later(reactor, seconds, lambda: None)

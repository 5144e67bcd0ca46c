"""The daemon as a real process: console script, twistd plugin, signals, socket activation."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

from twisted.trial.unittest import TestCase

from kukeond.client import BlockingClient
from tests.daemon.test_listener import short_tmpdir

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def wait_for(predicate, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


class DaemonProcessTests(TestCase):
    def setUp(self):
        self.dir = short_tmpdir(self)
        self.sock = os.path.join(self.dir, "s", "kukeond.sock")
        self.pid_file = os.path.join(self.dir, "s", "kukeond.pid")
        self.flags = [
            "--configuration",
            os.path.join(self.dir, "absent.yaml"),
            "--socket",
            self.sock,
            "--run-path",
            os.path.join(self.dir, "run"),
            "--containerd-socket",
            os.path.join(self.dir, "no-containerd.sock"),
            "--cgroup-root",
            "/kukeon-test-proc",
            "--reconcile-interval",
            "0",
        ]
        self.env = dict(os.environ, PYTHONPATH=ROOT)
        for name in ("KUKEOND_SOCKET", "KUKEON_RUN_PATH", "KUKEON_CGROUP_ROOT"):
            self.env.pop(name, None)

    def spawn(self, argv, **kw):
        kw.setdefault("stderr", subprocess.PIPE)
        kw.setdefault("cwd", ROOT)
        kw.setdefault("env", self.env)
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, **kw)

        def reap():
            if proc.poll() is None:
                proc.kill()
            proc.communicate()

        self.addCleanup(reap)
        return proc

    def serve(self):
        return self.spawn([sys.executable, "-m", "kukeond.cli", "serve", *self.flags])

    def ping(self):
        client = BlockingClient(f"unix://{self.sock}", timeout=10)
        try:
            return client.call("Ping")
        finally:
            client.close()

    def assert_stops_cleanly(self, proc, status=0):
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
        err = (err or b"").decode()
        self.assertEqual(proc.returncode, status, err)
        self.assertFalse(os.path.exists(self.sock))
        self.assertFalse(os.path.exists(self.pid_file))
        return err

    def test_serve_ping_sigterm(self):
        log_path = os.path.join(self.dir, "daemon.log")
        with open(log_path, "wb") as log:
            proc = self.spawn(
                [sys.executable, "-m", "kukeond.cli", "serve", *self.flags], stderr=log
            )

        def logged():
            with open(log_path) as f:
                return f.read()

        self.assertTrue(wait_for(lambda: os.path.exists(self.pid_file)))
        self.assertEqual(self.ping(), {"OK": True, "Version": "v0.5.0", "Err": None})
        with open(self.pid_file) as f:
            self.assertEqual(f.read(), f"{proc.pid}\n")
        # The probe of containerd runs beside the start; its warning may follow Ping.
        self.assertTrue(wait_for(lambda: "containerd does not answer" in logged()), logged())
        self.assert_stops_cleanly(proc)
        self.assertIn("kukeond listening", logged())

    def test_sigint_stops_too(self):
        proc = self.serve()
        self.assertTrue(wait_for(lambda: os.path.exists(self.pid_file)))
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=20)
        self.assertEqual(proc.returncode, 0)
        self.assertFalse(os.path.exists(self.sock))

    def test_sigterm_while_starting_is_a_clean_stop(self):
        # The socket exists before the reactor runs and installs its handlers.
        for _ in range(4):
            proc = self.serve()
            self.assertTrue(wait_for(lambda: os.path.exists(self.sock), timeout=30))
            self.assert_stops_cleanly(proc)

    def test_sigkill_leftovers_are_cleaned_by_next_start(self):
        proc = self.serve()
        self.assertTrue(wait_for(lambda: os.path.exists(self.pid_file)))
        proc.kill()
        proc.communicate()
        self.assertTrue(os.path.exists(self.sock))
        proc = self.serve()
        self.assertTrue(wait_for(lambda: _pid_is(self.pid_file, proc.pid)))
        self.assertTrue(self.ping()["OK"])
        self.assert_stops_cleanly(proc)

    def test_second_daemon_refuses(self):
        first = self.serve()
        self.assertTrue(wait_for(lambda: os.path.exists(self.pid_file)))
        second = self.serve()
        _, err = second.communicate(timeout=20)
        self.assertEqual(second.returncode, 1)
        self.assertIn("already listening", err.decode())
        self.assertTrue(self.ping()["OK"])
        self.assert_stops_cleanly(first)

    def test_instance_mismatch_exits_1_and_touches_nothing(self):
        run = os.path.join(self.dir, "run")
        os.makedirs(run)
        with open(os.path.join(run, ".kukeon-instance.json"), "w") as f:
            json.dump({"containerdNamespaceSuffix": "other.io", "cgroupRoot": "/kukeon"}, f)
        proc = self.serve()
        _, err = proc.communicate(timeout=20)
        self.assertEqual(proc.returncode, 1)
        self.assertIn("instance", err.decode())
        self.assertIn("other.io", err.decode())
        self.assertFalse(os.path.exists(self.sock))
        self.assertFalse(os.path.exists(self.pid_file))

    def test_bare_command_prints_help(self):
        proc = self.spawn([sys.executable, "-m", "kukeond.cli"])
        out, _ = proc.communicate(timeout=20)
        self.assertEqual(proc.returncode, 0)
        self.assertIn(b"serve", out)

    def test_invalid_log_level_is_a_usage_error(self):
        proc = self.spawn(
            [sys.executable, "-m", "kukeond.cli", "serve", *self.flags, "--log-level", "loud"]
        )
        _, err = proc.communicate(timeout=20)
        self.assertEqual(proc.returncode, 1)
        self.assertIn(b"Error: invalid log level", err)

    def test_invalid_yaml_is_a_clear_error(self):
        bad = os.path.join(self.dir, "bad.yaml")
        with open(bad, "w") as f:
            f.write("kind: [\n")
        flags = self.flags[2:]
        proc = self.spawn(
            [sys.executable, "-m", "kukeond.cli", "--configuration", bad, "serve", *flags]
        )
        _, err = proc.communicate(timeout=20)
        self.assertEqual(proc.returncode, 1)
        self.assertIn(bad.encode(), err)
        self.assertNotIn(b"Traceback", err)

    def test_twistd_plugin(self):
        # As installed: neither PYTHONPATH nor the working directory may lead
        # twistd to the checkout's twisted/plugins (tests/daemon/test_plugin_install.py).
        env = dict(self.env)
        env.pop("PYTHONPATH", None)
        twistd = os.path.join(os.path.dirname(sys.executable), "twistd")
        proc = self.spawn(
            [twistd, "-n", "--pidfile=", "kukeond", "serve", *self.flags], cwd=self.dir, env=env
        )
        wait_for(lambda: os.path.exists(self.pid_file) or proc.poll() is not None)
        if proc.poll() is not None:
            out, err = proc.communicate()
            said = (out + err).decode().strip().splitlines()[-3:]
            self.fail(f"twistd exited with {proc.returncode}: " + "\n".join(said))
        self.assertTrue(os.path.exists(self.pid_file), "twistd did not start")
        self.assertTrue(self.ping()["OK"])
        # twistd re-raises the signal that stopped it once shutdown is complete;
        # systemd counts death by SIGTERM as a clean stop.
        self.assert_stops_cleanly(proc, status=-signal.SIGTERM)

    def test_systemd_socket_activation(self):
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        os.makedirs(os.path.dirname(self.sock))
        listener.bind(self.sock)
        listener.listen(16)
        self.addCleanup(listener.close)
        launcher = (
            "import os, sys\n"
            "os.dup2(int(sys.argv[1]), 3)\n"
            "os.environ.update(LISTEN_FDS='1', LISTEN_FDNAMES='kukeond.socket',"
            " LISTEN_PID=str(os.getpid()))\n"
            "os.execv(sys.executable, [sys.executable, '-m', 'kukeond.cli', *sys.argv[2:]])\n"
        )
        proc = self.spawn(
            [sys.executable, "-c", launcher, str(listener.fileno()), "serve", *self.flags],
            pass_fds=[listener.fileno()],
        )
        self.assertTrue(wait_for(lambda: os.path.exists(self.pid_file)))
        self.assertTrue(self.ping()["OK"])
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=20)
        self.assertEqual(proc.returncode, 0)
        self.assertTrue(os.path.exists(self.sock), "the activating unit owns the socket")


def _pid_is(path, pid):
    try:
        with open(path) as f:
            return f.read() == f"{pid}\n"
    except OSError:
        return False

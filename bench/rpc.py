"""RPC latency and throughput of a real kukeond process over its unix socket.

Starts the daemon (``python -m kukeond.cli serve``) on a temp socket and run
path, then measures:

* Ping round-trip latency, one client, one request at a time (p50, p99);
* requests per second with 1, 8 and 32 concurrent connections, each a closed
  loop of Ping calls (send, wait for the answer, send the next);
* the daemon's CPU time per request during each throughput run, read from
  ``/proc``: steadier than requests per second when other work shares the
  cores;
* the daemon's resident memory after the load.

The load generator is one asyncio process; with 2 cores it competes with the
daemon for CPU, so the figures are a floor for the daemon, not a ceiling.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PING = b'{"method":"KukeonV1.Ping","params":[{}],"id":%d}'


def start_daemon(directory: str, root: str = ROOT) -> tuple[subprocess.Popen, str]:
    """Start ``python -m kukeond.cli serve`` from the source tree ``root`` (this one by default)."""
    sock = os.path.join(directory, "kukeond.sock")
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "kukeond.cli",
            "--configuration", os.path.join(directory, "none.yaml"),
            "serve", "--socket", sock, "--run-path", os.path.join(directory, "run"),
            "--containerd-socket", os.path.join(directory, "no-containerd.sock"),
            "--reconcile-interval", "0", "--log-level", "warn",
            "--cgroup-root", "/kukeon-bench",
        ],
        cwd=root,
        env=dict(os.environ, PYTHONPATH=root),
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while not os.path.exists(os.path.join(directory, "kukeond.pid")):
        if time.monotonic() > deadline or proc.poll() is not None:
            raise SystemExit("daemon did not start")
        time.sleep(0.05)
    return proc, sock


def request(method: str, params: dict) -> bytes:
    """A Go jsonrpc request frame for ``KukeonV1.<method>`` with ``%d`` where its id goes."""
    body = json.dumps({"method": f"KukeonV1.{method}", "params": [params]})
    return (body[:-1].replace("%", "%%") + ',"id":%d}').encode()


async def one_connection(
    sock: str, stop_at: float, latencies: list[float] | None, frame: bytes = PING
) -> int:
    """A closed loop of ``frame`` requests (Ping by default) on one connection until ``stop_at``."""
    reader, writer = await asyncio.open_unix_connection(sock, limit=1 << 26)
    done = 0
    while time.perf_counter() < stop_at:
        start = time.perf_counter()
        writer.write(frame % done)
        line = await reader.readline()
        if latencies is not None:
            latencies.append(time.perf_counter() - start)
        reply = json.loads(line)
        assert reply["error"] is None and not (reply["result"] or {}).get("Err"), line[:300]
        done += 1
    writer.close()
    await writer.wait_closed()
    return done


async def throughput(
    sock: str,
    connections: int,
    seconds: float,
    frame: bytes = PING,
    latencies: list[float] | None = None,
) -> float:
    stop_at = time.perf_counter() + seconds
    counts = await asyncio.gather(
        *(one_connection(sock, stop_at, latencies, frame) for _ in range(connections))
    )
    return sum(counts) / seconds


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time the process has used so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(sock: str, pid: int, connections: int, seconds: float = 3.0) -> tuple[float, float]:
    """Requests per second and the server's CPU microseconds per request.

    The CPU cost is the steadier figure on a shared machine: throughput also
    depends on what else runs on the two cores (the load generator first).
    """
    before = cpu_seconds(pid)
    rps = asyncio.run(throughput(sock, connections, seconds))
    used = cpu_seconds(pid) - before
    return rps, used * 1e6 / max(rps * seconds, 1)


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return -1


def main() -> None:
    directory = tempfile.mkdtemp(prefix="kb-")
    proc, sock = start_daemon(directory)
    try:
        print(f"daemon RSS at start: {rss_kib(proc.pid) / 1024:.1f} MiB")
        latencies: list[float] = []
        asyncio.run(one_connection(sock, time.perf_counter() + 0.5, None))  # warm up
        asyncio.run(one_connection(sock, time.perf_counter() + 3.0, latencies))
        latencies.sort()
        p50 = statistics.median(latencies) * 1e6
        p99 = latencies[int(len(latencies) * 0.99)] * 1e6
        print(f"Ping round trip, 1 client: p50 {p50:.0f} us, p99 {p99:.0f} us "
              f"({len(latencies)} calls)")  # fmt: skip
        for n in (1, 8, 32):
            rps, cpu = measure(sock, proc.pid, n)
            print(f"Ping throughput, {n:2d} connections: {rps:8.0f} req/s, "
                  f"daemon CPU {cpu:5.1f} us/request")  # fmt: skip
        print(f"daemon RSS after load: {rss_kib(proc.pid) / 1024:.1f} MiB")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()

"""RPC latency and throughput of a real kukeond process over its unix socket.

Starts the daemon (``python -m kukeond.cli serve``) on a temp socket and run
path, then measures:

* Ping round-trip latency, one client, one request at a time (p50, p99);
* requests per second with 1, 8 and 32 concurrent connections, each a closed
  loop of Ping calls (send, wait for the answer, send the next);
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


def start_daemon(directory: str) -> tuple[subprocess.Popen, str]:
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
        cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=ROOT),
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while not os.path.exists(os.path.join(directory, "kukeond.pid")):
        if time.monotonic() > deadline or proc.poll() is not None:
            raise SystemExit("daemon did not start")
        time.sleep(0.05)
    return proc, sock


async def one_connection(sock: str, stop_at: float, latencies: list[float] | None) -> int:
    reader, writer = await asyncio.open_unix_connection(sock)
    done = 0
    while time.perf_counter() < stop_at:
        start = time.perf_counter()
        writer.write(PING % done)
        line = await reader.readline()
        if latencies is not None:
            latencies.append(time.perf_counter() - start)
        assert json.loads(line)["result"]["OK"], line
        done += 1
    writer.close()
    await writer.wait_closed()
    return done


async def throughput(sock: str, connections: int, seconds: float) -> float:
    stop_at = time.perf_counter() + seconds
    counts = await asyncio.gather(
        *(one_connection(sock, stop_at, None) for _ in range(connections))
    )
    return sum(counts) / seconds


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
            rps = asyncio.run(throughput(sock, n, 3.0))
            print(f"Ping throughput, {n:2d} connections: {rps:8.0f} req/s")
        print(f"daemon RSS after load: {rss_kib(proc.pid) / 1024:.1f} MiB")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()

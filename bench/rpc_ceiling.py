"""The ceiling of ``bench/rpc.py`` on this machine: a bare Twisted unix server.

Serves the same socket protocol as far as the load generator can tell: for
every request object it reads it answers one constant Ping reply line,
without decoding anything (it counts ``"id":`` in the bytes read). Then it
runs the load of ``bench/rpc.py`` (round-trip latency, 1/8/32 connections)
against it. What kukeond adds on top of this is the cost of its own request
handling; the rest (reactor, system calls, the load generator sharing the
two cores) is the floor.

``--direct`` answers with ``socket.send`` when the transport has nothing
queued, as kukeond does, instead of ``transport.write`` (which registers the
socket for writing and sends on the next reactor turn).

Usage: ``python bench/rpc_ceiling.py [--direct]``; ``python bench/rpc_ceiling.py
serve SOCKET [--direct]`` is the server half.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench"))

REPLY = b'{"id":0,"result":{"OK":true,"Version":"v0.5.0","Err":null},"error":null}\n'


def serve(path: str, direct: bool) -> None:
    from twisted.internet import reactor
    from twisted.internet.protocol import Factory, Protocol

    class Constant(Protocol):
        def dataReceived(self, data: bytes) -> None:
            count = data.count(b'"id":')
            if not count:
                return
            out = REPLY * count
            transport = self.transport
            if direct and not transport._tempDataBuffer and not transport.dataBuffer:
                sent = transport.socket.send(out)
                out = out[sent:]
            if out:
                transport.write(out)

    factory = Factory.forProtocol(Constant)
    factory.noisy = False
    reactor.listenUNIX(path, factory)
    with open(path + ".ready", "w"):
        pass
    reactor.run()


def main() -> None:
    import rpc

    direct = "--direct" in sys.argv
    directory = tempfile.mkdtemp(prefix="kc-")
    sock = os.path.join(directory, "ceiling.sock")
    argv = [sys.executable, __file__, "serve", sock] + (["--direct"] if direct else [])
    proc = subprocess.Popen(argv)
    try:
        while not os.path.exists(sock + ".ready"):
            if proc.poll() is not None:
                raise SystemExit("server did not start")
            time.sleep(0.02)
        print(f"bare Twisted server{' (direct send)' if direct else ''}: "
              f"RSS {rpc.rss_kib(proc.pid) / 1024:.1f} MiB")  # fmt: skip
        latencies: list[float] = []
        asyncio.run(rpc.one_connection(sock, time.perf_counter() + 0.5, None))
        asyncio.run(rpc.one_connection(sock, time.perf_counter() + 3.0, latencies))
        latencies.sort()
        p50 = statistics.median(latencies) * 1e6
        p99 = latencies[int(len(latencies) * 0.99)] * 1e6
        print(f"Ping round trip, 1 client: p50 {p50:.0f} us, p99 {p99:.0f} us "
              f"({len(latencies)} calls)")  # fmt: skip
        for n in (1, 8, 32):
            rps, cpu = rpc.measure(sock, proc.pid, n)
            print(f"Ping throughput, {n:2d} connections: {rps:8.0f} req/s, "
                  f"server CPU {cpu:5.1f} us/request")  # fmt: skip
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "serve":
        serve(sys.argv[2], "--direct" in sys.argv)
    else:
        main()

"""Ping latency on one connection while another sends a large LoadImage request.

Starts the daemon as ``bench/rpc.py`` does (no containerd), then, per run:

* a child process connects and sends one ``LoadImage`` frame of ``--mb`` MB
  (base64 of random bytes, for a realm that does not exist: the daemon
  decodes all of it, then answers ``RealmNotFound``);
* meanwhile this process sends Pings on another connection in a closed loop
  (send, wait for the answer, send the next) and times each;
* the same frame is also sent once with no Pings, for the decode's own time.

Prints the Ping latencies (count, p50, p99, max) before the big frame,
while it is being sent, and while it is being decoded (from its last byte
sent to its reply), the time from its last byte sent to its reply, and the
daemon's peak resident memory. ``--tree DIR`` runs the daemon from another
source tree (an export of an older commit) to compare::

    git archive <commit> | tar -x -C /tmp/before
    python bench/big_frame.py --tree /tmp/before
"""

from __future__ import annotations

import argparse
import base64
import json
import multiprocessing
import os
import shutil
import signal
import socket
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench"))

from rpc import start_daemon  # noqa: E402

PING = b'{"method":"KukeonV1.Ping","params":[{}],"id":%d}'


def send_big(sock_path: str, mb: int, conn) -> None:
    """Child: build the frame, wait for the go, send it, read the reply, report the times."""
    tarball = base64.b64encode(os.urandom(mb * 3 // 4 * (1 << 20))).decode()
    params = json.dumps([{"Realm": "no-such-realm", "Tarball": tarball}])
    frame = ('{"method":"KukeonV1.LoadImage","params":' + params + ',"id":1}').encode()
    del tarball, params
    s = socket.socket(socket.AF_UNIX)
    s.connect(sock_path)
    reader = s.makefile("rb")
    conn.send(len(frame))
    conn.recv()  # go
    started = time.perf_counter()
    s.sendall(frame)
    sent = time.perf_counter()
    line = reader.readline()
    replied = time.perf_counter()
    reply = json.loads(line)
    result = reply["result"] or {}
    conn.send((started, sent, replied, reply["error"] or (result.get("Err") or {}).get("Kind")))
    s.close()


class Pinger:
    """One connection sending Pings one at a time, keeping ``(sent_at, latency)``."""

    def __init__(self, sock_path: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.connect(sock_path)
        self.reader = self.sock.makefile("rb")
        self.n = 0

    def ping(self) -> tuple[float, float]:
        start = time.perf_counter()
        self.sock.sendall(PING % self.n)
        line = self.reader.readline()
        end = time.perf_counter()
        assert b'"OK":true' in line, line
        self.n += 1
        return start, end - start

    def loop(self, seconds: float) -> list[tuple[float, float]]:
        stop = time.perf_counter() + seconds
        out = []
        while time.perf_counter() < stop:
            out.append(self.ping())
        return out


def stats(samples: list[float]) -> str:
    if not samples:
        return "no Pings"
    ms = sorted(x * 1e3 for x in samples)
    p50 = ms[len(ms) // 2]
    p99 = ms[min(len(ms) - 1, int(len(ms) * 0.99))]
    return f"{len(ms):6d} Pings, p50 {p50:7.2f} ms, p99 {p99:8.2f} ms, max {ms[-1]:8.2f} ms"


def peak_rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return -1.0


def big_frame(sock_path: str, mb: int, pinger: Pinger | None) -> tuple:
    """Send one big frame from a child process; Ping meanwhile when given a pinger."""
    parent, child = multiprocessing.Pipe()
    proc = multiprocessing.get_context("fork").Process(target=send_big, args=(sock_path, mb, child))
    proc.start()
    size = parent.recv()
    before = pinger.loop(1.0) if pinger is not None else []
    parent.send("go")
    during = []
    while pinger is not None and not parent.poll():
        during.append(pinger.ping())
    started, sent, replied, answer = parent.recv()
    proc.join()
    return size, before, during, started, sent, replied, answer


def one_run(sock_path: str, mb: int, pinger: Pinger) -> None:
    alone = big_frame(sock_path, mb, None)
    print(f"  no other client: last byte sent -> reply {alone[5] - alone[4]:.2f} s")
    size, before, during, started, sent, replied, answer = big_frame(sock_path, mb, pinger)
    upload = [lat for at, lat in during if at < sent]
    decode = [lat for at, lat in during if at >= sent]
    # A Ping sent during the upload but answered after it belongs to both.
    straddle = [lat for at, lat in during if at < sent < at + lat]
    print(f"  frame {size / 1e6:.0f} MB, answer {answer}")
    print(f"  before     : {stats([lat for _, lat in before])}")
    print(f"  upload     : {stats(upload)}  ({sent - started:.2f} s)")
    print(f"  decode     : {stats(decode + straddle)}")
    print(f"  last byte sent -> reply: {replied - sent:.2f} s")
    worst = sorted(during, key=lambda p: -p[1])[:5]
    print(
        "  slowest Pings (ms @ s after the last byte was sent): "
        + ", ".join(f"{lat * 1e3:.0f} @ {at - sent:+.2f}" for at, lat in worst)
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mb", type=int, default=200, help="size of the LoadImage frame")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--tree", default=ROOT, help="kukeond source tree to run the daemon from")
    opts = parser.parse_args()
    directory = tempfile.mkdtemp(prefix="kb-")
    proc, sock_path = start_daemon(directory, root=os.path.abspath(opts.tree))
    try:
        pinger = Pinger(sock_path)
        pinger.loop(0.5)  # warm up
        print(f"daemon from {opts.tree}")
        for run in range(1, opts.runs + 1):
            print(f"run {run}:")
            one_run(sock_path, opts.mb, pinger)
        print(f"daemon peak RSS: {peak_rss_mib(proc.pid):.0f} MiB")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()

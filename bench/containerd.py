"""Run a `true` container N times through GrpcContainerd and through `ctr run --rm`.

Uses the private test containerd and the offline busybox image. Prints the
median seconds per create+start+wait+delete for each and their ratio.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from kukeond.containerd.sync import SyncContainerd  # noqa: E402
from tests.containerd.ocispec import (  # noqa: E402
    minimal_spec,
    remove_cgroup_tree,
    unique_cgroup_root,
)
from tests.support.containerd import get_containerd_socket, unique_namespace  # noqa: E402
from tests.support.image import busybox_image  # noqa: E402

RUNS = int(os.environ.get("BENCH_RUNS", "7"))


def ours(client: SyncContainerd, ns: str, ref: str, cgroup: str, i: int) -> float:
    cid = f"b{i}"
    start = time.perf_counter()
    client.create_container(ns, cid, ref, minimal_spec(["true"], f"{cgroup}/{cid}"))
    client.create_task(ns, cid)
    client.start_task(ns, cid)
    client.wait_task(ns, cid, 30)
    client.delete_task(ns, cid)
    client.delete_container(ns, cid)
    return time.perf_counter() - start


def ctr(socket: str, ns: str, ref: str, cgroup: str, i: int) -> float:
    start = time.perf_counter()
    subprocess.run(
        [
            "ctr",
            "--address",
            socket,
            "-n",
            ns,
            "run",
            "--rm",
            "--cgroup",
            f"{cgroup}/ctr{i}",
            ref,
            f"ctr{i}",
            "true",
        ],
        check=True,
    )
    return time.perf_counter() - start


def main() -> None:
    socket = get_containerd_socket()
    image = busybox_image()
    client = SyncContainerd(socket)
    ns = unique_namespace()
    cgroup = unique_cgroup_root()
    try:
        client.import_image(ns, image.oci_tar)
        ours(client, ns, image.ref, cgroup, -1)  # warm-up
        mine = [ours(client, ns, image.ref, cgroup, i) for i in range(RUNS)]
        theirs = [ctr(socket, ns, image.ref, cgroup, i) for i in range(RUNS)]
    finally:
        for info in client.list_images(ns):
            client.delete_image(ns, info.name)
        client.delete_namespace(ns)
        client.close()
        remove_cgroup_tree(cgroup)
    a, b = statistics.median(mine), statistics.median(theirs)
    print(f"containerd run true, {RUNS} runs, median seconds")
    print(f"  kukeond GrpcContainerd : {a:.3f}")
    print(f"  ctr run --rm           : {b:.3f}")
    print(f"  ratio ours/ctr         : {a / b:.2f}")


if __name__ == "__main__":
    main()

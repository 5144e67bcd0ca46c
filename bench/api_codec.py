"""Cost of the Go-shaped JSON layer for a ListCells reply of 1000 cells.

Decodes a two-container cell document 1000 times (as the store does when
listing), then encodes the reply with ``to_wire`` + ``gojson.dumps`` (as the
wire does), and clones one document. Prints the median of several rounds.
"""

import json
import statistics
import time
from pathlib import Path

from kukeond.api import kukeonv1, v1beta1
from kukeond.base import gojson

CELLS = 1000
ROUNDS = 7
FIXTURE = Path(__file__).parent.parent / "tests" / "api" / "fixtures" / "metadata" / "cell.json"


def median_ms(fn) -> float:
    samples = []
    for _ in range(ROUNDS):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples)


def main() -> None:
    raw = json.loads(FIXTURE.read_text(encoding="utf-8"))
    docs = [v1beta1.CellDoc.from_wire(raw) for _ in range(CELLS)]
    reply = kukeonv1.METHODS["ListCells"][1](Cells=docs)
    size = len(gojson.dumps(reply.to_wire()).encode("utf-8"))
    decode = median_ms(lambda: [v1beta1.CellDoc.from_wire(raw) for _ in range(CELLS)])
    to_wire = median_ms(reply.to_wire)
    encode = median_ms(lambda: gojson.dumps(reply.to_wire()))
    clone = median_ms(lambda: [d.clone() for d in docs[:100]]) / 100
    print(f"ListCells reply: {CELLS} cells, {size / 1e6:.2f} MB")
    print(f"decode {CELLS} cells (from_wire):      {decode:8.1f} ms")
    print(f"to_wire of the reply:                  {to_wire:8.1f} ms")
    print(f"to_wire + gojson.dumps of the reply:   {encode:8.1f} ms")
    print(f"clone of one cell:                     {clone:8.3f} ms")


if __name__ == "__main__":
    main()

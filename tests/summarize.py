"""Pass trial's output through and end it with one plain ``N passed, N failed`` line.

Used by ``make test``: ``{ trial ...; trial ...; } | python -m tests.summarize``.
The input may hold several trial runs (the whole suite on containerd 1.6, then
the containerd-backed modules on 2.2); their counts are added up. A line
starting with ``tests part: NAME`` opens a run; a run that ends without a
trial summary (trial crashed, or could not start) counts as one failure.
Without any part line there is one run. Exits 1 when any run reported
failures or errors, or printed no summary at all.
"""

from __future__ import annotations

import re
import sys

_SUMMARY = re.compile(r"^(PASSED|FAILED) \((.*)\)\s*$")
PART_MARK = "tests part: "


def main() -> int:
    """Echo stdin; print the closing line; return the status it implies."""
    totals = {"passed": 0, "failed": 0, "skipped": 0}
    runs: list[dict] = []  # one per trial run: name, verdict, counts
    for line in sys.stdin:
        sys.stdout.write(line)
        if line.startswith(PART_MARK):
            runs.append(
                {
                    "name": line[len(PART_MARK) :].split(" (")[0].split(":")[0].strip(),
                    "verdict": None,
                }
            )
            continue
        m = _SUMMARY.match(line)
        if not m:
            continue
        if not runs or runs[-1]["verdict"] is not None:
            runs.append({"name": f"run {len(runs) + 1}", "verdict": None})
        counts = {k.strip(): int(v) for k, v in (p.split("=") for p in m.group(2).split(","))}
        run = runs[-1]
        run["verdict"] = m.group(1)
        run["passed"] = counts.get("successes", 0)
        run["failed"] = (
            counts.get("failures", 0)
            + counts.get("errors", 0)
            + counts.get("unexpectedSuccesses", 0)
        )
        run["skipped"] = counts.get("skips", 0)
    sys.stdout.flush()
    if not runs:
        print("tests: 0 passed, 1 failed (no trial summary)")
        return 1
    ok = True
    for run in runs:
        if run["verdict"] is None:
            run.update(passed=0, failed=1, skipped=0)
            print(f"{run['name']}: no trial summary, counted as 1 failed")
        elif len(runs) > 1:
            print(f"{run['name']}: {run['passed']} passed, {run['failed']} failed")
        ok = ok and run["verdict"] == "PASSED" and run["failed"] == 0
        for key in totals:
            totals[key] += run[key]
    line = f"tests: {totals['passed']} passed, {totals['failed']} failed"
    if totals["skipped"]:
        line += f", {totals['skipped']} skipped"
    print(line)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

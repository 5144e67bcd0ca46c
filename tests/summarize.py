"""Pass trial's output through and end it with a plain ``N passed, N failed`` line.

Used by ``make test``: ``trial ... | python -m tests.summarize``. Exits 1 when
trial reported failures or errors, or printed no summary at all.
"""

from __future__ import annotations

import re
import sys

_SUMMARY = re.compile(r"^(PASSED|FAILED) \((.*)\)\s*$")


def main() -> int:
    """Echo stdin; print the closing line; return the status it implies."""
    counts: dict[str, int] = {}
    verdict = None
    for line in sys.stdin:
        sys.stdout.write(line)
        m = _SUMMARY.match(line)
        if m:
            verdict = m.group(1)
            counts = {k.strip(): int(v) for k, v in (p.split("=") for p in m.group(2).split(","))}
    sys.stdout.flush()
    if verdict is None:
        print("tests: 0 passed, 1 failed (no trial summary)")
        return 1
    passed = counts.get("successes", 0)
    failed = counts.get("failures", 0) + counts.get("errors", 0)
    failed += counts.get("unexpectedSuccesses", 0)
    line = f"tests: {passed} passed, {failed} failed"
    if counts.get("skips"):
        line += f", {counts['skips']} skipped"
    print(line)
    return 0 if verdict == "PASSED" and failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())

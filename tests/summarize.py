#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Counts test results across meson test logs and prints 'N passed, N failed'.

A Criterion binary counts as the number of tests its synthesis line reports
(a binary that failed without one, e.g. a crash or timeout, counts as one
failure); any other meson test counts as one. Exits 1 if anything failed.
"""
import json
import re
import sys

SYN = re.compile(r"Synthesis: Tested: (\d+) \| Passing: (\d+) \| Failing: (\d+) \| Crashing: (\d+)")


def main(paths):
    passed = failed = 0
    for path in paths:
        try:
            with open(path, encoding="utf-8") as f:
                lines = f.readlines()
        except OSError as e:
            print(f"summarize: cannot read {path}: {e}", file=sys.stderr)
            failed += 1
            continue
        for line in lines:
            t = json.loads(line)
            out = (t.get("stdout") or "") + (t.get("stderr") or "")
            ok = t.get("result") in ("OK", "EXPECTEDFAIL", "SKIP")
            m = None
            for m in SYN.finditer(out):
                pass
            if m:
                p, f_, c = int(m.group(2)), int(m.group(3)), int(m.group(4))
                passed += p
                failed += f_ + c
                if not ok and f_ + c == 0:
                    failed += 1
            else:
                if ok:
                    passed += 1
                else:
                    failed += 1
                    print(f"summarize: {t.get('name')} {t.get('result')}", file=sys.stderr)
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

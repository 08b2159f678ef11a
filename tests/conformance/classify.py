#!/usr/bin/env python3
"""Classifies one iscsi-test-cu run of a single test.

Usage: classify.py LOGFILE EXIT_CODE
Prints one line: "passed", "skipped <reason>" or "failed <reason>".

The log is the verbose (-v, CUnit "basic") text output of
`iscsi-test-cu -t ALL.Suite.Test`. CUnit counts a test that returned early
with "[SKIPPED]" as passed, so a test is "passed" only if CUnit reports it
passed AND its own output has no [SKIPPED] line.
"""

import re
import sys


def test_body(text: str):
    """Returns (the test's own output, CUnit's verdict word or None).

    CUnit's basic runner prints "  Test: NAME ..." when the test starts (no
    newline) and "passed" / "FAILED" when it and its teardown are done. The
    test's logging lines come in between and are indented, so the verdict is
    the first "passed"/"FAILED" at the start of a line or right after "...".
    Output before the "Test:" line is iscsi-test-cu's global probing; output
    after the verdict is suite cleanup: neither belongs to the test.
    """
    m = re.search(r"^\s*Test: .*?\.\.\.", text, re.M)
    if not m:
        return "", None
    rest = text[m.end():]
    v = re.search(r"(?:^|\A)(passed|FAILED)", rest, re.M)
    if not v:
        return rest, None
    return rest[: v.start()], v.group(1)


def classify(text: str, rc: int) -> str:
    if rc == 124 or rc == 137:
        return "failed timeout"
    lines = text.splitlines()
    # CUnit basic-mode summary: "tests  <total> <ran> <passed> <failed> <inactive>"
    summary = None
    for line in lines:
        m = re.match(r"\s*tests\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\S+)", line)
        if m:
            summary = tuple(int(x) if x.isdigit() else 0 for x in m.groups())
    body, result = test_body(text)
    failed_marker = result == "FAILED"
    passed_marker = result == "passed"
    skip_lines = [l.strip() for l in body.splitlines() if "[SKIPPED]" in l]

    if summary is None:
        # No summary: setup failed (no login, no such test) or the tool died.
        for l in lines:
            if re.search(r"(fail|error|unable|could not)", l, re.I):
                return "failed no-summary: " + l.strip()[:160]
        return f"failed no-summary rc={rc}"
    total, ran, passed, failed, _inactive = summary
    if ran == 0:
        return "failed not-run"
    if failed > 0 or failed_marker:
        # First assertion message, if any: "1. test_x.c:123  - CU_ASSERT..."
        for l in lines:
            m = re.match(r"\s*\d+\.\s+(\S+:\d+\s+-\s+.*)", l)
            if m:
                msg = re.sub(r"\s{2,}\[SKIPPED\].*$", "", m.group(1))
                return "failed " + msg[:200]
        return "failed"
    if skip_lines:
        reason = skip_lines[0]
        reason = re.sub(r"^.*\[SKIPPED\]\s*", "", reason)
        return "skipped " + reason[:200]
    if passed_marker or passed == ran:
        return "passed"
    return "failed unclassified"


def main() -> int:
    path, rc = sys.argv[1], int(sys.argv[2])
    with open(path, encoding="utf-8", errors="replace") as f:
        text = f.read()
    print(classify(text, rc))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The benchmark report's bookkeeping (pure logic, no timings): a run of
some figures (`bench/run.py --only ...`) replaces only their sections of
docs/benchmarks.md and keeps the rest of the file as it was."""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "bench"))

import report  # noqa: E402
from common import replace_section  # noqa: E402


def _cri(ratio_ms: float) -> dict:
    row = {"n": 3, "median": ratio_ms / 1000, "p95": ratio_ms / 1000, "min": 0, "max": 0,
           "error": None, "failures": 0}
    return {"started": "2026-12-01T10:00:00+00:00", "rounds": 1, "n": 3, "warmup_runs": 0,
            "uptime_start": "load average: 1.00", "uptime_end": "load average: 1.00",
            "systems": {"containerd-py": {"version": "containerd-py 0.1.0", "runs": []},
                        "containerd-cri": {"version": "containerd 1.6.20", "runs": []}},
            "summary": {"containerd-py": {"CreatePod": row, "StartContainer": row},
                        "containerd-cri": {"CreatePod": dict(row, median=0.1),
                                           "StartContainer": dict(row, median=0.1)}}}


def test_only_cri_replaces_its_section_and_headline_rows(tmp_path):
    docs = str(tmp_path)
    report.write({"load": {"error": "not run here"}}, docs)
    md = os.path.join(docs, "benchmarks.md")
    with open(md, "a") as f:
        f.write("\nA note someone wrote by hand.\n")
    with open(md) as f:
        before = f.read()
    load_begin, load_end = report.markers("load")
    load_section = before[before.index(load_begin):before.index(load_end)]

    report.write({"load": {"error": "a different run"}, "cri": _cri(20)}, docs, only={"cri"})
    with open(md) as f:
        after = f.read()
    assert load_section in after, "the load section is kept as it was"
    assert "a different run" not in after
    assert "A note someone wrote by hand." in after
    assert after.count("## CRI: critest --benchmark") == 1
    assert "CRI pod start (`RunPodSandbox`" in after  # a headline row
    # the new section goes before the daemon log, not after it
    assert after.index(report.markers("cri")[0]) < after.index(report.markers("daemon-log")[0])

    report.write({"cri": _cri(30)}, docs, only={"cri"})
    with open(md) as f:
        again = f.read()
    assert again.count("## CRI: critest --benchmark") == 1
    assert "| 30.0 ms |" in again and "| 20.0 ms |" not in again


def test_replace_section_appends_a_new_section_before_a_marker(tmp_path):
    md = str(tmp_path / "b.md")
    with open(md, "w") as f:
        f.write("# T\n\nA\n\n<!-- tail -->\nend\n")
    replace_section(md, "<!-- x: begin -->", "<!-- x: end -->", ["X1"], before="<!-- tail -->")
    replace_section(md, "<!-- x: begin -->", "<!-- x: end -->", ["X2"], before="<!-- tail -->")
    with open(md) as f:
        text = f.read()
    assert text == "# T\n\nA\n\n<!-- x: begin -->\nX2\n<!-- x: end -->\n\n<!-- tail -->\nend\n"

"""The run folder the three runners share: refusing to mix runs, resume keys, leftover parts, reports."""

import json

import pytest

from personaseg.bench.rundir import SAMPLES, RunDir, latest, sample_key
from personaseg.errors import InputError
from personaseg.io import append_jsonl, read_jsonl


def _rec(method, image, **kw):
    return {"method": method, "image": image, "concept": "c", **kw}


def test_a_folder_holding_a_run_needs_resume(tmp_path):
    run = RunDir.start(tmp_path / "run", resume=False)
    run.append(_rec("ti", "a.png", iou=1.0))
    run.finish()
    with pytest.raises(InputError, match="already holds a run.*"):
        RunDir.start(tmp_path / "run", resume=False)
    assert RunDir.start(tmp_path / "run", resume=True).done() == {("ti", "a.png", "c")}


def test_errors_are_not_done_and_a_result_wins_over_an_error(tmp_path):
    run = RunDir.start(tmp_path / "run", resume=False)
    for rec in (_rec("ti", "a.png", error="bad"), _rec("ti", "b.png", iou=0.5), _rec("ti", "b.png", error="x")):
        run.append(rec)
    records = run.finish()
    assert run.done() == {("ti", "b.png", "c")}  # a.png is tried again on resume
    best = latest(records)
    assert best[("ti", "b.png", "c")]["iou"] == 0.5 and "error" in best[("ti", "a.png", "c")]


def test_a_killed_runs_parts_are_folded_in_at_start(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    append_jsonl(folder / (SAMPLES + ".part1"), _rec("ti", "a.png", iou=1.0))  # left by a killed process
    run = RunDir.start(folder, resume=True)
    assert not list(folder.glob("*.part*")) and run.done() == {("ti", "a.png", "c")}


def test_other_keys_and_the_report_files(tmp_path):
    key = lambda r: (r["mode"], r["target"])  # noqa: E731 - as bench video's
    run = RunDir.start(tmp_path / "run", resume=False, key=key)
    run.append({"mode": "temporal", "target": "s/1", "J": 1.0})
    assert run.finish() == read_jsonl(tmp_path / "run" / SAMPLES) and run.done() == {("temporal", "s/1")}
    run.write_report({"results": {}}, "# report\n")
    assert run.report() == {"results": {}} == json.loads((tmp_path / "run" / "report.json").read_text())
    assert (tmp_path / "run" / "report.md").read_text() == "# report\n"
    assert sample_key(_rec("ti", "a.png")) == ("ti", "a.png", "c")

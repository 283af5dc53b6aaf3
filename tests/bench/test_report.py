"""bench personal's report: the PerSeg figure (objIoU) in report.md's headline and the terminal table,
named so; the note on finds without a presence reference."""

import pytest

from personaseg.bench import examples
from personaseg.bench.config import BenchConfig
from personaseg.bench.runner import run_personal

from .fakes import install


@pytest.fixture
def report(monkeypatch, tmp_path):
    install(monkeypatch)
    root = examples.make_mug19(tmp_path / "mug19")
    cfg = BenchConfig(out=tmp_path / "run", concepts_dir=tmp_path / "concepts", model="tiny")
    return run_personal(root, cfg, progress=False), tmp_path / "run"


def test_report_md_headline_shows_objiou(report):
    rep, run = report
    md = (run / "report.md").read_text()
    head = md[: md.index("## All metrics")]  # the first table, before the detail
    assert "objIoU" in head and "PerSeg" in head
    obj = rep["results"]["class-word"]["all"]["objIoU"]
    row = next(line for line in head.splitlines() if line.startswith("| class-word |"))
    assert row.rstrip(" |").endswith(f"{100 * obj:.1f}")


def test_terminal_table_shows_objiou(report, run, tmp_path):
    rep, _ = report
    code, out, _ = run("bench", "personal", tmp_path / "mug19", "--model", "tiny", "--out", tmp_path / "again",
                       "--concepts-dir", tmp_path / "concepts")
    assert code == 0
    assert "objIoU" in out and "PerSeg" in " ".join(out.split())
    obj = rep["results"]["class-word"]["all"]["objIoU"]
    row = next(line for line in out.splitlines() if "class-word" in line)
    assert f"{100 * obj:.1f}" in row


def test_reference_note_only_when_some_concept_find_had_no_reference():
    from personaseg.bench.report import reference_note

    absent = {"ti": {"fp_rate": 0.1, "n": 4, "n_without_reference": 0}, "class-word": {"fp_rate": 1.0, "n": 4}}
    assert reference_note({"absent": absent}) is None
    absent["lora"] = {"fp_rate": 1.0, "n": 4, "n_without_reference": 3}
    assert reference_note({"absent": absent}).startswith("No relative presence for 3 lora sample(s)")

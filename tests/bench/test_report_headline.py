"""The PerSeg figure (objIoU) is in bench personal's terminal table and report.md's headline, named so."""

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


def test_terminal_table_shows_objiou(report, capsys):
    from personaseg.cli.bench import _print_personal

    rep, run = report
    _print_personal(rep, run)
    out = capsys.readouterr().out
    assert "objIoU" in out and "PerSeg" in " ".join(out.split())
    obj = rep["results"]["class-word"]["all"]["objIoU"]
    row = next(line for line in out.splitlines() if "class-word" in line)
    assert f"{100 * obj:.1f}" in row

"""`personaseg demo`'s folder: run twice it replaces its own output, never a folder it did not write."""

import pytest


@pytest.fixture
def fake_demo(monkeypatch):
    """run_demo without learning: writes a picture into the folder it is given."""
    import personaseg.toyworld.demo as demo_mod

    calls = []

    def run_demo(out, seed=0, scenes=6, steps=None, **_):
        out.mkdir(parents=True)
        (out / "demo.png").write_bytes(b"picture %d" % len(calls))
        calls.append(out)
        return demo_mod.DemoResult(concept="<x>", class_word="circle", picture=out / "demo.png",
                                   iou={"alone": {"class-word": 0.5, "personal": 0.9, "n": 2}},
                                   seconds={"total": 1.0, "learn": 0.5, "find": 0.5})

    monkeypatch.setattr(demo_mod, "run_demo", run_demo)
    return calls


def test_demo_twice_replaces_its_own_folder(run, fake_demo, tmp_path):
    out = tmp_path / "personaseg-demo"
    code, stdout, err = run("demo", "--out", out)
    assert code == 0, err
    assert (out / "demo.png").read_bytes() == b"picture 0" and (out / ".personaseg-demo").is_file()
    code, stdout, err = run("demo", "--out", out)  # failed: "exists and is not empty"
    assert code == 0, err
    assert (out / "demo.png").read_bytes() == b"picture 1"
    assert str(out / "demo.png") in stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["personaseg-demo"]  # no temporary folder left


def test_demo_never_replaces_a_foreign_folder(run, fake_demo, tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.tex").write_text("years of work")
    code, _, err = run("demo", "--out", out)
    assert code != 0 and "not written by personaseg demo" in err and "Traceback" not in err
    assert (out / "thesis.tex").read_text() == "years of work" and not fake_demo


def test_a_failed_demo_leaves_the_earlier_one(run, fake_demo, tmp_path, monkeypatch):
    import personaseg.toyworld.demo as demo_mod

    out = tmp_path / "d"
    assert run("demo", "--out", out)[0] == 0

    def broken(work, **_):
        work.mkdir()
        raise KeyboardInterrupt

    monkeypatch.setattr(demo_mod, "run_demo", broken)
    assert run("demo", "--out", out)[0] == 130
    assert (out / "demo.png").read_bytes() == b"picture 0"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]


def test_gitignore_holds_the_demo_folder():
    from pathlib import Path

    lines = (Path(__file__).parents[2] / ".gitignore").read_text().split()
    assert "personaseg-demo/" in lines

import subprocess

from personaseg.models import model_fingerprint
from personaseg.provenance import git_commit, provenance


def _git(root, *args):
    return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, check=True).stdout.strip()


def test_git_commit_names_the_checkout_and_its_changes(tmp_path):
    _git(tmp_path, "init", "-q")
    (tmp_path / "a.txt").write_text("1")
    _git(tmp_path, "add", "a.txt")
    _git(tmp_path, "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "one")
    assert git_commit(tmp_path) == {"commit": _git(tmp_path, "rev-parse", "HEAD"), "dirty": False}
    (tmp_path / "a.txt").write_text("2")
    assert git_commit(tmp_path)["dirty"] is True


def test_no_checkout_gives_none(tmp_path):
    assert git_commit(tmp_path) == {"commit": None, "dirty": None}


def test_provenance_of_the_toy_model_is_its_fingerprint():
    p = provenance("toy")
    assert p["model"] == "toy" and p["model_fingerprint"] == model_fingerprint("toy") != "toy"

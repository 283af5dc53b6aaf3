"""`personaseg concepts`, `learn` and `find` against a store and files tried as an adversarial user would
(issue 21): one line, a non-zero exit, nothing outside the store touched, nothing overwritten."""

import json
import shutil
import subprocess
import sys

import numpy as np
import torch
from PIL import Image
from safetensors.torch import save_file

from .test_learn_cli import _one_error_line


def _store(tmp_path):
    from personaseg.concepts import ConceptStore

    store = ConceptStore(tmp_path / "store")
    save_file({"<mymug>": torch.randn(2, 32)}, str(tmp_path / "mymug.safetensors"))
    store.import_(tmp_path / "mymug.safetensors")
    return store


def test_rm_show_export_refuse_names_leading_outside_the_store(run, tmp_path):
    store = _store(tmp_path)
    victim = tmp_path / "victim2"
    victim.mkdir()
    (victim / "concept.json").write_text((store.root / "mymug" / "concept.json").read_text())
    evil = store.root / "evil"
    shutil.copytree(store.root / "mymug", evil)
    meta = json.loads((evil / "concept.json").read_text())
    (evil / "concept.json").write_text(json.dumps({**meta, "name": "../../victim2"}))
    for args in (["rm", "../../victim2", "--yes"], ["show", "../../victim2"], ["export", "<../../victim2>"]):
        _one_error_line(*run("concepts", *args, "--concepts-dir", store.root)[::2], "not a concept name")
    assert victim.is_dir()
    code, _, err = run("concepts", "rm", "evil", "--yes", "--concepts-dir", store.root)
    assert code == 0 and "removed <evil>" in err and victim.is_dir() and (store.root / "mymug").is_dir()


def test_list_shows_the_good_concepts_beside_a_broken_one(run, tmp_path):
    store = _store(tmp_path)
    (store.root / "broken").mkdir()
    (store.root / "broken" / "concept.json").write_text("[]")
    code, out, err = run("concepts", "list", "--concepts-dir", store.root)
    assert code == 0 and "<mymug>" in out and "Traceback" not in err
    warned = [line for line in err.splitlines() if line.strip()]
    assert len(warned) == 1 and warned[0].startswith("warning: skipped concept folder") and "broken" in warned[0]
    code, _, err = run("concepts", "rm", "broken", "--yes", "--concepts-dir", store.root)
    assert code == 0 and not (store.root / "broken").exists()


def test_export_does_not_replace_a_file_without_force(run, tmp_path):
    store = _store(tmp_path)
    existing = tmp_path / "existing.txt"
    existing.write_text("unrelated")
    _one_error_line(*run("concepts", "export", "mymug", "--out", existing, "--concepts-dir", store.root)[::2],
                    "existing.txt exists", "--force")
    assert existing.read_text() == "unrelated"
    code, _, err = run("concepts", "export", "mymug", "--out", existing, "--force", "--concepts-dir", store.root)
    assert code == 0 and existing.read_bytes() != b"unrelated"


HOLD = """
import sys, time
from personaseg.concepts import ConceptStore
with ConceptStore(sys.argv[1]).lock("mymug"):
    print("held", flush=True)
    time.sleep(60)
"""


def test_a_second_learn_of_a_token_says_so_in_one_line(run, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(photos / "a.png")
    store = tmp_path / "store"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(store)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        _one_error_line(*run("learn", photos, "--token", "<mymug>", "--model", "toy", "--concepts-dir", store)[::2],
                        "<mymug> is being learned", f"pid {holder.pid}")
    finally:
        holder.kill()
        holder.wait()


def test_flags_out_of_bounds_are_one_line_before_a_model_loads(run, tmp_path):
    image = tmp_path / "a.png"
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(image)
    _one_error_line(*run("find", "mug", image, "--model", "not/loaded", "--draws", 1000000)[::2], "draws=1000000", "1..1000")
    _one_error_line(*run("find", "mug", image, "--model", "not/loaded", "--min-presence", "nan")[::2], "min_presence=nan")
    _one_error_line(*run("learn", tmp_path, "--token", "<" + "x" * 300 + ">", "--model", "not/loaded",
                         "--concepts-dir", tmp_path / "s")[::2], "characters long")


def test_find_refuses_a_concept_name_leading_outside_the_store(run, tmp_path, tiny_model_dir):
    store = _store(tmp_path)
    shutil.copytree(store.root / "mymug", tmp_path / "victim")  # a concept folder outside the store
    image = tmp_path / "a.png"
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(image)
    _one_error_line(*run("find", "<../victim>", image, "--model", tiny_model_dir, "--concepts-dir", store.root,
                         "--out", tmp_path / "out")[::2], "not a concept name")
    assert not (tmp_path / "out").exists()


def test_find_over_many_images_skips_a_crafted_tiff_and_goes_on(run, tmp_path, tiny_model_dir):
    from PIL import TiffImagePlugin

    folder = tmp_path / "images"
    folder.mkdir()
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(folder / "a.png")
    ifd = TiffImagePlugin.ImageFileDirectory_v2()
    ifd[273] = TiffImagePlugin.IFDRational(3, 1)  # StripOffsets as a rational: TypeError in PIL
    ifd.tagtype[273] = 5
    Image.new("RGB", (8, 6)).save(folder / "b.tif", "TIFF", tiffinfo=ifd)
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(folder / "c.png")
    code, _, err = run("find", "mug", folder, "--model", tiny_model_dir, "--draws", 1, "--out", tmp_path / "out")
    assert code == 0 and "Traceback" not in err, err
    assert "b.tif is damaged" in err and sorted(p.name for p in (tmp_path / "out").glob("*.mask.png")) == [
        "a.mask.png", "c.mask.png"]

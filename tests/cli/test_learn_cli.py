"""`personaseg learn` and `personaseg concepts` end to end on a tiny random model (2 steps, 32 px)."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def photos(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (40 + 8 * i, 48, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    return folder


def _one_error_line(code: int, err: str, *words: str) -> None:
    assert code != 0 and "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), err
    assert all(w in lines[0] for w in words), lines[0]


def test_learn_then_manage_concepts(run, photos, tiny_model_dir, tmp_path):
    store = tmp_path / "store"
    args = ["learn", photos, "--token", "<mymug>", "--class-word", "mug", "--init-word", "cup", "--model", tiny_model_dir,
            "--steps", 2, "--resolution", 32, "--grad-accum", 1, "--vectors", 2, "--concepts-dir", store, "-q"]
    code, _, err = run(*args)
    assert code == 0, err
    assert "learned <mymug>" in err and (store / "mymug" / "learned_embeds.safetensors").exists()

    code, _, err = run(*args)
    _one_error_line(code, err, "<mymug> already exists", "--force")

    # the presence rule at another timestep than learn measured the reference with: one warning line
    image = sorted(Path(photos).iterdir())[0]
    code, _, err = run("find", "<mymug>", image, "--model", tiny_model_dir, "--timestep", 300, "--concepts-dir", store,
                       "--min-relative-presence", 0.5, "--out", tmp_path / "out")
    assert code == 0, err
    warned = [line for line in err.splitlines() if "presence reference" in line]
    assert len(warned) == 1 and warned[0].startswith("warning: <mymug>") and "timestep" in warned[0], err

    code, out, _ = run("concepts", "list", "--concepts-dir", store)
    assert code == 0 and "<mymug>" in out
    code, out, _ = run("concepts", "show", "<mymug>", "--concepts-dir", store)
    assert code == 0 and '"method": "ti"' in out and '"num_vectors": 2' in out and '"init_word": "cup"' in out

    a1111 = tmp_path / "mine.safetensors"
    code, _, err = run("concepts", "export", "mymug", "--format", "a1111", "--out", a1111, "--concepts-dir", store)
    assert code == 0 and load_file(str(a1111))["emb_params"].shape == (2, 32)
    code, _, err = run("concepts", "import", a1111, "--concepts-dir", store)
    assert code == 0 and (store / "mine").is_dir()
    code, _, _ = run("concepts", "rm", "<mine>", "--yes", "--concepts-dir", store)
    assert code == 0 and not (store / "mine").exists()
    code, _, err = run("concepts", "show", "<nope>", "--concepts-dir", store)
    _one_error_line(code, err, "unknown concept <nope>", "personaseg learn PHOTOS --token '<nope>'")


def test_learn_bad_input_is_one_line(run, photos, tmp_path):
    store = tmp_path / "store"
    empty = tmp_path / "empty"
    empty.mkdir()
    _one_error_line(*run("learn", empty, "--token", "<x>", "--concepts-dir", store)[::2], "no images found")
    _one_error_line(*run("learn", photos, "--token", "<my mug>", "--concepts-dir", store)[::2], "space")
    (tmp_path / "r.toml").write_text("stepz = 3\n")
    _one_error_line(*run("learn", photos, "--token", "<x>", "--recipe", tmp_path / "r.toml",
                         "--concepts-dir", store)[::2], "stepz")
    _one_error_line(*run("learn", photos, "--token", "<x>", "--resume", "--concepts-dir", store)[::2],
                    "no interrupted run")
    _one_error_line(*run("learn", photos, "--token", "<x>", "--contrast-hardest", -1, "--concepts-dir", store)[::2],
                    "contrast_hardest=-1", "contrast_hardest >= 0")
    _one_error_line(*run("learn", photos, "--token", "<x>", "--contrast-pairs", 0, "--concepts-dir", store)[::2],
                    "contrast_pairs=0", "use 1 or more")
    assert not store.exists()
    code, _, err = run("learn", photos, "--token", "<x>", "--method", "textual")
    assert code == 2 and "Traceback" not in err


def test_help_teaches_by_example(run):
    code, out, _ = run("learn", "--help")
    assert code == 0 and "--token" in out and "personaseg learn ./photos" in out
    code, out, _ = run("concepts", "--help")
    assert code == 0 and "export" in out and "import" in out


def _hinted_command(err: str, after: str) -> list[str]:
    """The command a one-line message tells the user to paste (``... (resume with: CMD)``), as the shell splits it."""
    import shlex

    line = next(line for line in err.splitlines() if after in line)
    return shlex.split(line.split(after, 1)[1].strip().removesuffix(")"))


def test_resume_and_find_take_the_model_the_concept_was_learned_on(run, photos, tiny_model_dir, tmp_path,
                                                                    ctrl_c_after, monkeypatch):
    """learn's printed commands paste as they are (the token quoted, --model and the store named);
    --resume and find without --model take the concept's own model; another model is one line."""
    import json
    import shutil

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # the default SD model: not here, and not fetched
    monkeypatch.delenv("PERSONASEG_MODEL", raising=False)
    disarm = ctrl_c_after(1)
    store = tmp_path / "my store"  # a space, which the printed commands must quote
    other = tmp_path / "other-model"
    shutil.copytree(tiny_model_dir, other)
    code, _, err = run("learn", photos, "--token", "<mymug>", "--class-word", "mug", "--model", tiny_model_dir,
                       "--steps", 2, "--resolution", 32, "--grad-accum", 1, "--concepts-dir", store, "-q")
    assert code == 130, err
    resume = _hinted_command(err, "resume with:")
    assert resume == ["personaseg", "learn", str(photos), "--token", "<mymug>", "--model",
                      str(Path(tiny_model_dir).resolve()), "--concepts-dir", str(store), "--resume"]
    disarm()
    _one_error_line(*run("learn", photos, "--token", "<mymug>", "--model", other, "--concepts-dir", store,
                         "--resume")[::2], "learned on", "resume without --model")
    code, _, err = run("learn", photos, "--token", "<mymug>", "--concepts-dir", store, "--resume", "-q")
    assert code == 0, err  # the checkpoint's model, not the default SD
    use = _hinted_command(err, "use it:")
    assert use == ["personaseg", "find", "<mymug>", "IMAGE", "--model", str(Path(tiny_model_dir).resolve()),
                   "--concepts-dir", str(store)]
    image = sorted(photos.iterdir())[0]
    code, _, err = run("find", "<mymug>", image, "--concepts-dir", store, "--out", tmp_path / "out")
    assert code == 0, err  # no --model: the concept's
    assert (tmp_path / "out" / f"{image.stem}.mask.png").exists()
    _one_error_line(*run("find", "<mymug>", image, "--model", other, "--concepts-dir", store, "--out",
                         tmp_path / "out2")[::2], "<mymug> was learned on", str(other))
    _one_error_line(*run("find", "<nope>", image, "--concepts-dir", store, "--out", tmp_path / "out3")[::2],
                    "unknown concept <nope>")  # before loading the default model, which is not here
    code, _, err = run("segment", image, "--labels", "<mymug>,cup", "--concepts-dir", store, "--out", tmp_path / "seg")
    assert code == 0, err
    legend = json.loads((tmp_path / "seg" / f"{image.stem}.legend.json").read_text())
    assert "<mymug>, cup" in legend["prompt"] and legend["labels"]["1"] == "<mymug>"
    code, _, err = run("explain", "cup", image, "--prompt", "a <mymug> and a {}", "--concepts-dir", store,
                       "--out", tmp_path / "ex")
    assert code == 0 and "a <mymug> and a cup" in err, err


def test_learn_on_the_toy_model_takes_its_card_settings(run, tmp_path, ctrl_c_after):
    """No --recipe: the toy card's fast settings (200 steps), and the resume hint names --model toy."""
    ctrl_c_after(1)
    from personaseg.toyworld.scenes import make_scene

    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(2):
        Image.fromarray(make_scene(i, size=64).image).save(photos / f"{i}.png")
    code, _, err = run("learn", photos, "--token", "<x>", "--class-word", "circle", "--model", "toy",
                       "--concepts-dir", tmp_path / "store", "-q")
    assert code == 130 and "interrupted at step 1/200;" in err, err  # not 1/3000: SD's TI
    assert _hinted_command(err, "resume with:") == ["personaseg", "learn", str(photos), "--token", "<x>", "--model",
                                                    "toy", "--concepts-dir", str(tmp_path / "store"), "--resume"]


def _white(folder, name, size, box):
    folder.mkdir(exist_ok=True)
    a = np.zeros((size[1], size[0]), np.uint8)
    x0, y0, x1, y1 = box
    a[y0:y1, x0:x1] = 255
    Image.fromarray(a).save(folder / name)


def test_learn_with_masks_folder(run, photos, tiny_model_dir, tmp_path):
    _white(tmp_path / "masks", "1.png", (48, 48), (10, 10, 30, 30))
    store = tmp_path / "store"
    code, _, err = run("learn", photos, "--token", "<mymug>", "--class-word", "mug", "--model", tiny_model_dir,
                       "--steps", "2", "--guided-steps", "1", "--resolution", "32", "--grad-accum", "1",
                       "--masks", tmp_path / "masks", "--concepts-dir", store, "-q")
    assert code == 0, err
    import json

    meta = json.loads((store / "mymug" / "concept.json").read_text())
    assert [m is not None for m in meta["masks"]] == [False, True, False] and meta["steps"] == 1


@pytest.mark.parametrize("args, words", [
    (["--masks", "MASKS"], ["mask", "is 20x20 but its photo 0.png is 48x40"]),
    (["--box", "0.png=5,5,60,20"], ["box 0.png=5,5,60,20 is outside its photo (48x40)"]),
    (["--click", "9.png=1,1"], ["--click 9.png=1,1 names no photo"]),
])
def test_learn_bad_guidance_is_one_line_and_stores_nothing(run, photos, tiny_model_dir, tmp_path, args, words):
    _white(tmp_path / "masks", "0.png", (20, 20), (0, 0, 10, 10))
    args = [str(tmp_path / "masks") if a == "MASKS" else a for a in args]
    store = tmp_path / "store"
    code, _, err = run("learn", photos, "--token", "<mymug>", "--class-word", "mug", "--model", tiny_model_dir,
                       "--steps", "2", "--resolution", "32", *args, "--concepts-dir", store, "-q")
    _one_error_line(code, err, *words)
    assert not (store / "mymug").exists()

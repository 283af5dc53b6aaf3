"""Learning from masks: matching them to photos, checking them, and the guidance losses."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from personaseg.concepts import learn
from personaseg.concepts.calibrate import find_spec
from personaseg.concepts.data import load_photos
from personaseg.concepts.masks import Guidance, crop_mask, derive_mask
from personaseg.concepts.trainer import Trainer
from personaseg.errors import InputError
from personaseg.models import load_pipeline
from personaseg.runtime import make_accelerator


def _mask(folder, name, size, box=None):
    """A white rectangle ``box`` (x0, y0, x1, y1; default the left half) on black, of ``size``."""
    w, h = size
    a = np.zeros((h, w), np.uint8)
    x0, y0, x1, y1 = box or (0, 0, w // 2, h)
    a[y0:y1, x0:x1] = 255
    folder.mkdir(exist_ok=True)
    Image.fromarray(a).save(folder / name)
    return folder / name


SIZES = {"mug0": (48, 40), "mug1": (40, 56), "mug2": (64, 64)}  # the photos fixture


def test_masks_folder_beside_files_and_unguided_photos(photos, tmp_path):
    _mask(tmp_path / "m", "mug0.png", SIZES["mug0"])
    _mask(photos, "mug2.mask.png", SIZES["mug2"])  # the name find writes, beside the photo
    photo_set = load_photos(photos, 32)
    assert [p.name for p in photo_set.paths] == ["mug0.png", "mug1.png", "mug2.png"]  # the mask is not a photo
    g = Guidance(photo_set.paths, tmp_path / "m")
    pm = g.photo_masks(32)
    assert pm.guided.tolist() == [True, False, True]
    assert pm.sources[0].endswith("m/mug0.png") and pm.sources[2].endswith("mug2.mask.png")
    assert (pm.masks[1] == 1).all()  # unguided: all of it counts
    # the left half of a 48x40 photo, resized to 38x32 and centre-cropped to 32: columns 0..15 of 32
    assert pm.masks[0][:, :14].min() == 1 and pm.masks[0][:, 18:].max() == 0


def test_crop_follows_the_photo_crop():
    tall = np.zeros((80, 40), bool)
    tall[20:60, :] = True  # the middle half of a tall photo: after the centre crop, all of it
    crop = crop_mask(tall, 16)
    assert crop.shape == (16, 16) and crop[1:-1].min() == 1 and crop.min() > 0.5  # edge rows blend


@pytest.mark.parametrize("case, match", [
    ("size", r"mask .*mug0.png is 40x48 but its photo mug0.png is 48x40 \(as displayed, EXIF"),
    ("empty", r"mask .*mug0.png of mug0.png is empty"),
    ("stray", r"mask .*cup.png matches no photo"),
])
def test_bad_masks_are_one_line_and_store_nothing(photos, tmp_path, tiny_sd, tiny_cfg, case, match):
    folder = tmp_path / "m"
    if case == "size":
        _mask(folder, "mug0.png", (40, 48))
    elif case == "empty":
        _mask(folder, "mug0.png", SIZES["mug0"], box=(0, 0, 0, 0))
    else:
        _mask(folder, "cup.png", (10, 10))
    with pytest.raises(InputError, match=match) as err:
        learn(photos, "<mymug>", tiny_cfg(), model=str(tiny_sd), concepts_dir=tmp_path / "c", progress=False,
              masks=folder)
    assert "\n" not in str(err.value)
    assert not (tmp_path / "c").exists() or not any((tmp_path / "c").iterdir())


@pytest.mark.filterwarnings("ignore:only one photo")
def test_exif_rotated_photo_needs_its_displayed_size(tmp_path):
    folder = tmp_path / "p"
    folder.mkdir()
    img = Image.fromarray(np.zeros((20, 30, 3), np.uint8))  # stored 30x20, displayed 20x30 (rotated)
    exif = Image.Exif()
    exif[0x0112] = 6
    img.save(folder / "a.jpg", exif=exif)
    paths = load_photos(folder, 16).paths
    _mask(tmp_path / "m", "a.png", (30, 20))
    with pytest.raises(InputError, match="is 30x20 but its photo a.jpg is 20x30"):
        Guidance(paths, tmp_path / "m")
    (tmp_path / "m" / "a.png").unlink()
    _mask(tmp_path / "m", "a.png", (20, 30))
    assert Guidance(paths, tmp_path / "m").photo_masks(16).guided.tolist() == [True]


def test_learn_with_masks_records_them(photos, tmp_path, tiny_sd, tiny_cfg):
    folder = tmp_path / "m"
    _mask(folder, "mug0.png", SIZES["mug0"])
    concept = learn(photos, "<mymug>", tiny_cfg(guided_steps=1), model=str(tiny_sd), concepts_dir=tmp_path / "c",
                    progress=False, masks=folder)
    meta = json.loads((concept.path / "concept.json").read_text())
    assert meta["masks"][0]["source"].endswith("mug0.png") and meta["masks"][1] is None
    assert meta["steps"] == 1 and meta["config"]["steps"] == 1 and meta["config"]["guided_steps"] == 1
    assert meta["config"]["attention_weight"] == 1.0 and meta["config"]["masked_loss"] is True
    assert (concept.path / "masks" / "mug0.png").is_file()
    assert meta["learn_seconds"] >= meta["train_seconds"] > 0 and meta["learn_cpu_seconds"] > 0


def test_guidance_losses_reach_the_token_and_follow_the_mask(photos, tmp_path, tiny_sd, tiny_cfg):
    """The attention loss is zero for a map equal to its mask and grows as the map leaves it; the
    masked denoising loss ignores what happens outside the mask."""
    pipe, card = load_pipeline(str(tiny_sd), device="cpu")
    _mask(tmp_path / "m", "mug2.png", SIZES["mug2"])
    cfg = tiny_cfg(attention_weight=1.0, masked_loss=True, batch_size=3).resolved()
    acc = make_accelerator("no")
    photo_set = load_photos(photos, cfg.resolution)
    photo_set.masks = Guidance(photo_set.paths, tmp_path / "m").photo_masks(cfg.resolution)
    with Trainer(pipe, "<mymug>", cfg, acc, photo_set, contrast=find_spec(pipe, card)) as tr:
        assert tr.attention and tr.masked and tr.contrast is None
        cb = tr.contrast_batch(0)
        assert cb.latents.shape[0] == 3 and cb.guided.sum() == 1  # photos only, one with a mask
        maps = tr.token_maps(cb)
        loss = tr.attention_loss(maps, cb)
        loss.backward()
        (name, p), = tr.named_trainable().items()
        assert name.endswith("token_embedding.rows") and p.grad.abs().sum() > 0
        k = int(cb.guided.nonzero()[0])
        target = torch.nn.functional.interpolate(cb.masks[k][None, None], size=maps.shape[-2:], mode="area")[0, 0]
        perfect = maps.detach().clone()
        perfect[k] = target
        assert float(tr.attention_loss(perfect, cb)) == pytest.approx(0.0, abs=1e-6)
        assert float(tr.attention_loss(1 - perfect, cb)) > 0.5
        b = tr.batch(0)
        assert b.masks is not None and b.masks.shape[0] == 3
    from personaseg.concepts.trainer import _mse

    pred, target = torch.zeros(1, 4, 2, 2), torch.zeros(1, 4, 2, 2)
    target[..., 1] = 5.0  # wrong only in the right column
    left = torch.tensor([[[1.0, 0.0], [1.0, 0.0]]])
    assert float(_mse(pred, target, left)) == 0.0 and float(_mse(pred, target, None)) > 0


def test_box_and_click_pick_the_class_region():
    class_mask = np.zeros((20, 30), bool)
    class_mask[2:8, 2:8] = True  # one object
    class_mask[10:18, 15:28] = True  # another
    got = derive_mask(class_mask, click=[20, 12])
    assert got[12, 20] and not got[5, 5] and got.sum() == 8 * 13
    got = derive_mask(class_mask, box=[0, 0, 10, 10])
    assert got[5, 5] and got.sum() == 36
    with pytest.raises(InputError, match="click a.png=1,19: the model finds no 'mug' there"):
        derive_mask(class_mask, click=[1, 19], where="a.png=1,19", class_word="mug")
    with pytest.raises(InputError, match="finds no 'mug' in it"):
        derive_mask(class_mask, box=[10, 0, 14, 9], where="a.png=...", class_word="mug")


@pytest.mark.parametrize("kind, value, match", [
    ("box", "mug0.png=10,10,5,20", "has x1 <= x0"),
    ("box", "mug0.png=0,0,49,20", r"outside its photo \(48x40\)"),
    ("click", "mug0.png=48,3", r"outside its photo \(48x40\)"),
    ("click", "nope.png=1,1", "names no photo"),
    ("click", "mug0.png=1", "is not PHOTO=X,Y"),
])
def test_bad_boxes_and_clicks(photos, kind, value, match):
    paths = load_photos(photos, 16).paths
    with pytest.raises(InputError, match=match):
        Guidance(paths, boxes=[value] if kind == "box" else None, clicks=[value] if kind == "click" else None)


def test_learn_from_a_click_saves_the_derived_mask(photos, tmp_path, tiny_sd, tiny_cfg, monkeypatch):
    """The tiny model's class-word map is random: stand a known one in and check the plumbing."""
    import personaseg.concepts.calibrate as calibrate

    def finder(pipe, card, word):
        def find(path):
            from personaseg.images import load_image

            w, h = load_image(path).size
            m = np.zeros((h, w), bool)
            m[5:20, 5:20] = True
            return m
        return find

    monkeypatch.setattr(calibrate, "class_finder", finder)
    concept = learn(photos, "<mymug>", tiny_cfg(), model=str(tiny_sd), concepts_dir=tmp_path / "c",
                    progress=False, clicks={"mug1": (10, 10)})
    meta = json.loads((concept.path / "concept.json").read_text())
    assert meta["derived_masks"] == ["masks/mug1.png"] and meta["masks"][1]["source"] == "click 10,10"
    saved = np.asarray(Image.open(concept.path / "masks" / "mug1.png")) > 0
    assert saved.shape == (56, 40) and saved.sum() == 15 * 15


def test_resume_with_masks_ends_where_an_uninterrupted_run_ends(pipe, photos, tmp_path, tiny_cfg, ctrl_c_after,
                                                                monkeypatch):
    from personaseg.concepts.learning import LearnInterrupted
    from personaseg.errors import ConceptError

    _mask(tmp_path / "m", "mug1.png", SIZES["mug1"])
    cfg = tiny_cfg(steps=3, batch_size=2, lr=1e-2)
    kw = dict(pipe=pipe, progress=False, masks=tmp_path / "m")
    straight = learn(photos, "<mymug>", cfg, concepts_dir=tmp_path / "a", **kw)
    ctrl_c_after(1)
    with pytest.raises(LearnInterrupted):
        learn(photos, "<mymug>", cfg, concepts_dir=tmp_path / "b", **kw)
    monkeypatch.undo()
    with pytest.raises(ConceptError, match="masks differ"):
        learn(photos, "<mymug>", None, pipe=pipe, concepts_dir=tmp_path / "b", resume=True, progress=False)
    resumed = learn(photos, "<mymug>", None, concepts_dir=tmp_path / "b", resume=True, **kw)
    from safetensors.torch import load_file

    a, b = (load_file(c.path / "learned_embeds.safetensors") for c in (straight, resumed))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_lora_learns_with_masks_too(photos, tmp_path, tiny_sd, tiny_cfg, monkeypatch):
    """Both guidance losses run for LoRA: the attention loss reaches the adapter and the token rows."""
    seen = {}
    original = Trainer.attention_loss

    def spy(self, maps, b):
        loss = original(self, maps, b)
        seen["loss"] = float(loss.detach())
        return loss

    monkeypatch.setattr(Trainer, "attention_loss", spy)
    _mask(tmp_path / "m", "mug2.png", SIZES["mug2"])
    concept = learn(photos, "<mymug>", tiny_cfg(method="lora", steps=2, batch_size=3), model=str(tiny_sd),
                    concepts_dir=tmp_path / "c", progress=False, masks=tmp_path / "m")
    assert concept.method == "lora" and concept.meta["masks"][2] is not None and seen["loss"] > 0


def test_a_guided_learn_stops_by_its_own_rule(photos, tmp_path, tiny_sd, tiny_cfg):
    """guided_stop_when_stable applies when a photo has a mask, and only then; the plain rule stays off."""
    folder = tmp_path / "m"
    _mask(folder, "mug0.png", SIZES["mug0"])
    cfg = tiny_cfg(steps=12, guided_stop_when_stable=1.0, stop_check_every=3)
    guided = learn(photos, "<mymug>", cfg, model=str(tiny_sd), concepts_dir=tmp_path / "c", progress=False,
                   masks=folder)
    assert guided.meta["steps_run"] == 6 and guided.meta["config"]["stop_when_stable"] == 1.0
    plain = learn(photos, "<plain>", cfg, model=str(tiny_sd), concepts_dir=tmp_path / "c", progress=False)
    assert "steps_run" not in plain.meta and plain.meta["config"]["stop_when_stable"] is None

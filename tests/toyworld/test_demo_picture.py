"""The demo's picture: a row per scored scene (absent ones too), each with a photo of its own."""

import types

import numpy as np


def test_demo_picture_shows_every_scene_and_each_rows_photo(monkeypatch, tmp_path):
    """It repeated one photo in every row and left out the absent scenes it scored."""
    import personaseg.concepts as concepts
    import personaseg.segmenter as segmenter
    import personaseg.viz as viz
    from personaseg.toyworld.demo import run_demo

    monkeypatch.setattr(concepts, "learn", lambda *a, **k: None)  # no learning: the picture is under test

    class FakeSeg:
        def set_image(self, image):
            self.size = image.size

        def find(self, phrase):
            mask = np.zeros(self.size[::-1], bool)
            mask[: self.size[1] // 2] = phrase.startswith("<")
            return types.SimpleNamespace(mask=mask, found=bool(mask.any()))

    monkeypatch.setattr(segmenter.Segmenter, "from_pretrained", classmethod(lambda cls, *a, **k: FakeSeg()))
    drawn = {}
    real_grid = viz.image_grid

    def grid(rows, titles=None, tile=128, captions=None):
        drawn.update(rows=rows, captions=captions)
        return real_grid(rows, titles, tile, captions)

    monkeypatch.setattr(viz, "image_grid", grid)
    r = run_demo(tmp_path / "demo", scenes=6, progress=False)
    n = sum(d["n"] for d in r.iou.values())
    assert len(drawn["rows"]) == n == 6 and "absent" in r.iou  # every scored scene, absent ones included
    photos = [np.asarray(row[0]).tobytes() for row in drawn["rows"]]
    assert len(set(photos)) > 1  # not one photo repeated in every row
    kinds = [c[1] for c in drawn["captions"]]
    assert any("absent" in k for k in kinds) and any("look-alike" in k for k in kinds)
    assert r.picture.exists()

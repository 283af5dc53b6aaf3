"""The DAVIS-layout video reader: toy videos with photos, the first-frame protocol, a DAVIS root."""

import shutil

import numpy as np
from PIL import Image

from personaseg.bench.davis import open_video_dataset


def test_first_frame_protocol_without_photos(toy_videos, tmp_path):
    root = tmp_path / "davis"
    shutil.copytree(toy_videos, root)
    shutil.rmtree(root / "photos")
    (root / "meta.json").unlink()
    data = open_video_dataset(root)
    t = data.targets[0]
    assert t.from_first_frame and list(t.scored) == list(range(1, 7))  # DAVIS: first and last not scored
    assert t.concept.class_word == t.seq.split("-")[0] and len(t.concept.photos) == 2
    assert t.tags == [] and t.gt(0).any()


def test_davis_root_with_two_objects_and_jpeg_frames(tmp_path):
    seq = tmp_path / "JPEGImages" / "480p" / "dog-agility"
    ann = tmp_path / "Annotations" / "480p" / "dog-agility"
    seq.mkdir(parents=True)
    ann.mkdir(parents=True)
    for t in range(4):
        Image.fromarray(np.full((30, 40, 3), 90 + t, np.uint8)).save(seq / f"{t:05d}.jpg")
        labels = np.zeros((30, 40), np.uint8)
        labels[5:15, 5 + t:15 + t] = 1
        labels[18:28, 20:30] = 2
        labels[0, :] = 255  # void
        im = Image.fromarray(labels, "P")
        im.putpalette([0, 0, 0, 128, 0, 0, 0, 128, 0] + [0, 0, 0] * 253)
        im.save(ann / f"{t:05d}.png")
    data = open_video_dataset(tmp_path)
    assert [t.key for t in data.targets] == ["dog-agility/1", "dog-agility/2"] and not data.errors
    first = data.targets[0]
    assert first.concept.class_word == "dog" and first.from_first_frame
    assert first.gt(3)[5:15, 8:18].all() and first.gt(3).sum() == 100
    assert first.concept.photos[0].size == (14, 14)  # the box and a quarter on each side

"""Reading clips frame by frame (PyAV, folders) and writing overlay videos."""

import numpy as np
import pytest
from PIL import Image

from personaseg.errors import InputError
from personaseg.video import FrameFolder, OverlayWriter, collect_clips, open_clip, write_video


def _images(n, size=(34, 20)):
    rng = np.random.default_rng(0)
    return [Image.fromarray((rng.random((size[1], size[0], 3)) * 255).astype("uint8")) for _ in range(n)]


def test_roundtrip_rate_times_and_even_size(tmp_path):
    path = write_video(tmp_path / "a.mp4", _images(12, (33, 21)), fps=12.5)
    clip = open_clip(path)
    frames = list(clip.frames())
    assert clip.fps == pytest.approx(12.5) and clip.stem == "a"
    assert [f.index for f in frames] == list(range(12))
    assert frames[5].time == pytest.approx(0.4) and frames[0].image.size == (34, 22)  # padded to even


def test_start_end_every(tmp_path):
    clip = open_clip(write_video(tmp_path / "a.mp4", _images(20), fps=10))
    assert [f.index for f in clip.frames(start=0.5, end=1.5, every=3)] == [5, 8, 11, 14]
    with pytest.raises(InputError, match="past the end"):
        list(clip.frames(start=3))
    with pytest.raises(InputError, match="--every 0"):
        list(clip.frames(every=0))


def test_folder_order_rate_and_sizes(tmp_path):
    for i, im in zip([10, 9, 1], _images(3)):
        im.save(tmp_path / f"frame_{i}.png")
    (tmp_path / "notes.txt").write_text("not a frame")
    clip = open_clip(tmp_path, fps=5)
    assert [f.name for f in clip.files] == ["frame_1.png", "frame_9.png", "frame_10.png"]  # digits as numbers
    assert [f.time for f in clip.frames()] == [0.0, 0.2, 0.4]
    _images(1, (20, 20))[0].save(tmp_path / "frame_11.png")
    with pytest.raises(InputError, match="frame_11.png: frame is 20x20"):
        list(open_clip(tmp_path).frames())
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no frames"):
        FrameFolder(tmp_path / "empty")


def test_gif_and_collect(tmp_path):
    ims = _images(4)
    ims[0].save(tmp_path / "g.gif", save_all=True, append_images=ims[1:], duration=100)
    assert len(list(open_clip(tmp_path / "g.gif").frames())) == 4
    write_video(tmp_path / "b.mp4", ims, fps=5)
    assert [p.name for p in collect_clips([tmp_path])] == ["b.mp4", "g.gif"]  # a folder of videos: the videos


def test_overlay_writer_leaves_nothing_on_error(tmp_path):
    with pytest.raises(RuntimeError):
        with OverlayWriter(tmp_path / "o.mp4", fps=5) as out:
            out.write(_images(1)[0])
            raise RuntimeError("stop")
    assert list(tmp_path.iterdir()) == []

"""Segmenter.track on a tiny random pipeline: per-frame mode is find, batching, streaming, temporal rules."""

from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from personaseg.config import FindConfig
from personaseg.errors import ConfigError
from personaseg.segmenter import Segmenter
from personaseg.track import TrackConfig, continuing_region, present


@pytest.fixture(scope="module")
def seg(tiny_model_dir):
    return Segmenter.from_pretrained(str(tiny_model_dir), device="cpu", config=FindConfig(draws=3, long_side=64))


@pytest.fixture(scope="module")
def frames():
    """A small 'clip': a red square drifting right over noise (same size every frame)."""
    rng = np.random.default_rng(0)
    base = (rng.random((40, 56, 3)) * 60 + 150).astype(np.uint8)
    out = []
    for t in range(5):
        a = base.copy()
        a[10:26, 5 + 3 * t:21 + 3 * t] = (220, 30, 30)
        out.append(Image.fromarray(a))
    return out


def test_per_frame_mode_is_find_batched(seg, frames):
    calls = seg.unet_calls
    results = list(seg.track(frames, "mug", config=TrackConfig(temporal=False, batch=3)))
    assert seg.unet_calls - calls == 1 + 2  # one 1-draw probe of the passes, then batches of 3 and 2 frames
    assert [r.index for r in results] == list(range(5)) and all(r.unet_rows == 3 for r in results)
    for image, r in zip(frames, results):
        seg.set_image(image)
        want = seg.find("mug")
        assert r.mask.shape == (40, 56) and r.found == want.found
        assert r.presence == pytest.approx(want.presence, rel=1e-4)
        assert np.allclose(r.scores, want.scores, atol=1e-3)  # batched UNet: float summation order only
        assert (r.mask == want.mask).mean() > 0.99


@pytest.fixture(scope="module")
def windowed(seg, frames):
    """Temporal runs of one draw per frame, without and with a window of one frame each side."""
    return (list(seg.track(frames, "mug", config=TrackConfig(temporal=True, draws=1, window=0))),
            list(seg.track(frames, "mug", config=TrackConfig(temporal=True, draws=1, window=1))))


def test_temporal_finds_each_frame_on_its_own_draws(windowed):
    alone, avg = windowed
    assert all(r.unet_rows == 1 for r in avg)
    # presence and outline come from the frame's own draws; the window only votes on found
    assert [a.presence for a in alone] == pytest.approx([b.presence for b in avg], rel=1e-6)
    assert all(np.array_equal(a.scores, b.scores) for a, b in zip(alone, avg) if a.found and b.found)


def _frame(presence, relative=None):
    return SimpleNamespace(presence=presence, relative_presence=relative)


def test_found_is_the_windows_median_which_keeps_entries_and_exits():
    cfg = FindConfig(min_presence=0.5, min_relative_presence=0.7)
    # a lone weak frame among strong neighbours is kept; a lone strong frame among weak ones is not
    assert present(cfg, [_frame(0.9), _frame(0.1), _frame(0.9)], False, 1.0)
    assert not present(cfg, [_frame(0.1), _frame(0.9), _frame(0.1)], False, 1.0)
    # an object entering: the first frame with it (two of five in view before it) is found, the one before is not
    assert present(cfg, [_frame(p) for p in (0.1, 0.1, 0.9, 0.9, 0.9)], False, 1.0)
    assert not present(cfg, [_frame(p) for p in (0.1, 0.1, 0.1, 0.9, 0.9)], False, 1.0)
    # relative presence is read the same way, when the frames have one
    assert not present(cfg, [_frame(0.9, r) for r in (0.9, 0.6, 0.6)], False, 1.0)
    assert present(cfg, [_frame(0.9, r) for r in (0.9, 0.6, 0.6)], True, 0.8)  # hysteresis: 0.6 >= 0.8 * 0.7


def test_streaming_holds_at_most_batch_plus_window_frames(seg, frames):
    pulled = []

    def clip():
        for i, f in enumerate(frames * 2):  # 10 frames
            pulled.append(i)
            yield f

    cfg = TrackConfig(temporal=True, draws=1, window=2, batch=3)
    ahead = []
    for n, r in enumerate(seg.track(clip(), "mug", config=cfg)):
        assert r.index == n
        ahead.append(len(pulled) - n)
    assert n == 9 and max(ahead) <= cfg.batch + cfg.window
    with pytest.raises(RuntimeError, match="set_image"):  # track leaves no frame set
        seg.find("mug")


def test_hysteresis_keeps_a_weakening_object(seg, frames, windowed):
    p = [r.presence for r in windowed[0]]  # window 0: found reads each frame's own presence
    k = next(i for i in range(len(p) - 1) if 0.8 * p[i] < p[i + 1] < p[i])  # presence dips after frame k
    strict = Segmenter(seg.pipe, seg.card, FindConfig(draws=3, long_side=64, min_presence=p[k]))
    off = list(strict.track(frames, "mug", config=TrackConfig(temporal=True, draws=1, window=0, hysteresis=1.0)))
    on = list(strict.track(frames, "mug", config=TrackConfig(temporal=True, draws=1, window=0, hysteresis=0.8)))
    assert [r.presence for r in on] == pytest.approx(p)
    assert off[k].found and not off[k + 1].found and not off[k + 1].mask.any()
    assert on[k].found and on[k + 1].found and on[k + 1].mask.any()  # one weak frame does not drop it
    low = [i for i in range(len(p)) if p[i] < 0.8 * p[k]]
    assert all(not on[i].found for i in low)  # well below: dropped even with hysteresis


def test_continuing_region_follows_the_previous_mask():
    every = np.zeros((20, 30), bool)
    every[2:8, 2:8] = True  # region A
    every[10:18, 15:28] = True  # region B, larger
    prev = np.zeros_like(every)
    prev[4:9, 4:9] = True  # overlaps A
    assert np.array_equal(continuing_region(every, prev), every & (np.arange(30) < 10)[None, :])
    assert continuing_region(every, np.zeros_like(every)) is None
    assert continuing_region(np.zeros_like(every), prev) is None


def test_track_config_checks():
    with pytest.raises(ConfigError):
        TrackConfig(draws=0)
    with pytest.raises(ConfigError):
        TrackConfig(hysteresis=1.5)

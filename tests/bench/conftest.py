"""Fixtures the bench tests share."""

import pytest

from personaseg.toyworld.video import make_video_bench


@pytest.fixture(scope="session")
def toy_videos(tmp_path_factory):
    """A toy video benchmark: 3 sequences (alone, distractor, leaves) of 8 frames, with photos."""
    return make_video_bench(tmp_path_factory.mktemp("v") / "toy", seed=4, sequences=3, frames=8).root

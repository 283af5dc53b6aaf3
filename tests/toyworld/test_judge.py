"""The sample judge reads the scene generator's own drawings right, so low scores on samples are the model's."""

import itertools

import numpy as np

from personaseg.toyworld.judge import read_object
from personaseg.toyworld.scenes import COLOURS, PATTERNS, SHAPES, background, make_scene


def test_reads_every_rendered_shape_colour_and_pattern():
    wrong = []
    for i, (shape, colour, pattern) in enumerate(itertools.product(SHAPES, COLOURS, PATTERNS)):
        scene = make_scene(1000 * i, specs=[(shape, colour, pattern)])
        r = read_object(scene.image, colour)
        assert r.colour_found, (shape, colour, pattern)
        if r.shape != shape:
            wrong.append((shape, colour, pattern, r.shape))
    assert len(wrong) <= 1, wrong  # measured: 2 of 270 wrong over 3 seeds per combination, both crosses


def test_no_blob_where_the_colour_is_not_drawn():
    rng = np.random.default_rng(0)
    empty = np.clip(background(rng), 0, 255).round().astype(np.uint8)
    for colour in COLOURS:
        r = read_object(empty, colour)
        assert not r.colour_found and r.shape is None and r.fit == 0
    blue = make_scene(3, specs=[("circle", "blue", "plain")]).image
    assert not read_object(blue, "red").colour_found and read_object(blue, "blue").shape == "circle"

"""Prompts of the paper's weakly supervised semantic segmentation setting (spec, "Prompts").

"a photo including " + class phrases + background words + ", and {last}." The class phrases
are read; the background words only soak up attention.
"""

from __future__ import annotations

VOC_CLASSES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair",
    "cow", "dining table", "dog", "horse", "motorbike", "person", "potted plant", "sheep", "sofa",
    "train", "tv monitor",
)

# Class names the paper expands in the prompt.
EXPANSIONS = {
    "person": "person with clothes",
    "bird": "bird avian",
    "chair": "chair seat",
    "tv monitor": "tv monitor screen",
    "tvmonitor": "tv monitor screen",
    "pottedplant": "potted plant",
    "diningtable": "dining table",
}

BACKGROUND_WORDS = ("tree", "river", "sea", "lake", "water", "railway", "railroad", "track", "stone", "rocks")

# Per-class background words that replace the default list when the class is present.
BACKGROUND_OVERRIDES = {
    "boat": ("river", "sea", "lake", "water", "mountain"),
    "cow": ("grass", "stone", "rocks"),
    "train": ("railway", "railroad", "track"),
    "tv monitor": ("keyboard", "wall"),
    "tvmonitor": ("keyboard", "wall"),
}


def expand(label: str) -> str:
    """The phrase the prompt uses for a class label."""
    return EXPANSIONS.get(label, label)


def background_words(labels: list[str]) -> list[str]:
    """Background words for an image's labels: the overrides of its classes, else the default."""
    words: list[str] = []
    for label in labels:
        for w in BACKGROUND_OVERRIDES.get(label, ()):
            if w not in words:
                words.append(w)
    return words or list(BACKGROUND_WORDS)


def semantic_prompt(labels: list[str], background: bool = True) -> tuple[str, list[str]]:
    """The prompt for ``labels`` (in class order) and the phrase of each label in it."""
    phrases = [expand(label) for label in labels]
    words = phrases + (background_words(labels) if background else [])
    if len(words) == 1:
        return f"a photo including {words[0]}.", phrases
    return "a photo including " + ", ".join(words[:-1]) + f", and {words[-1]}.", phrases

"""Where phrases sit in a tokenized prompt: the token columns a cross-attention map is read from.

Pure functions of a tokenizer and text (no model runs), shared by ``find``, ``segment`` and
``explain``.
"""

from __future__ import annotations

import re

from .errors import PhraseError

CONCEPT = re.compile(r"<[^<>|\s]+>")  # a learned concept in a phrase or prompt ("<mymug>"; not "<|endoftext|>")


def phrase_positions(tokenizer, prompt: str, phrases: list[str]) -> list[list[int]]:
    """Token positions of each phrase in the tokenized prompt (in order of appearance)."""
    ids = tokenizer(prompt, truncation=False).input_ids
    if len(ids) > tokenizer.model_max_length:
        raise PhraseError(
            f"prompt is {len(ids)} tokens, the text encoder takes {tokenizer.model_max_length}",
            hint="use a shorter prompt or fewer labels",
        )
    out, start = [], 1
    for phrase in phrases:
        pid = tokenizer(phrase, add_special_tokens=False).input_ids
        hit = next((i for i in range(start, len(ids) - len(pid) + 1) if ids[i:i + len(pid)] == pid), None)
        if not pid or hit is None:
            raise PhraseError(f"phrase {phrase!r} is not in the prompt {prompt!r}",
                              hint="the prompt template must contain the phrase ({})")
        out.append(list(range(hit, hit + len(pid))))
        start = hit + len(pid)
    return out


def prompt_tokens(tokenizer, prompt: str) -> tuple[list[int], list[str]]:
    """Every token of ``prompt`` the text encoder reads, without the start and end tokens:
    (positions, token strings)."""
    ids = tokenizer(prompt, truncation=True, max_length=tokenizer.model_max_length).input_ids
    positions = list(range(1, len(ids) - 1))
    return positions, tokenizer.convert_ids_to_tokens([ids[p] for p in positions])

"""The toy model's tokenizer: a CLIPTokenizer over our own tiny vocabulary.

``vocab.json`` holds every byte-level character (alone and word-final, as CLIP's vocabulary does),
so any text tokenizes without unknown tokens, plus each word of the toy world as one token.
``merges.txt`` builds each word left to right (``c i`` -> ``ci``, ``ci r`` -> ``cir`` ...);
:func:`build_tokenizer` checks that every world word ends as a single token.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from ..single_file import bytes_to_unicode
from .scenes import COLOURS, SHAPES

BOS, EOS = "<|startoftext|>", "<|endoftext|>"
WORDS = ("a", "an", "photo", "of", "and", "the", "picture", "with", "on", *SHAPES, *COLOURS)


def _bpe(word: str, ranks: dict[tuple[str, str], int]) -> list[str]:
    """Apply BPE ``ranks`` to one word as CLIP does (last piece carries ``</w>``)."""
    pieces = list(word[:-1]) + [word[-1] + "</w>"]
    while len(pieces) > 1:
        pairs = [(ranks.get(p, 1 << 30), i) for i, p in enumerate(zip(pieces, pieces[1:]))]
        rank, i = min(pairs)
        if rank == 1 << 30:
            break
        pieces[i : i + 2] = [pieces[i] + pieces[i + 1]]
    return pieces


def vocab_and_merges(words: tuple[str, ...] = WORDS) -> tuple[dict[str, int], list[str]]:
    """The vocabulary (token -> id) and the BPE merges that make each of ``words`` one token.

    Each word's merges join whatever pieces the merges so far leave, left to right, appended
    last; repeated until every word is a single token (a new merge can split an earlier word).
    """
    chars = list(bytes_to_unicode().values())
    tokens = chars + [c + "</w>" for c in chars]
    merges: list[tuple[str, str]] = []
    for _ in range(10):
        changed = False
        for word in words:
            ranks = {m: i for i, m in enumerate(merges)}
            pieces = _bpe(word, ranks)
            left = pieces[0]
            for right in pieces[1:]:
                merges.append((left, right))
                left = left + right
                tokens.append(left)
                changed = True
        if not changed:
            break
    tokens = list(dict.fromkeys(tokens)) + [BOS, EOS]
    return {t: i for i, t in enumerate(tokens)}, [f"{a} {b}" for a, b in merges]


def write_tokenizer_files(folder: str | Path, words: tuple[str, ...] = WORDS) -> Path:
    """Write ``vocab.json`` and ``merges.txt`` into ``folder`` (atomically each) and return it."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vocab, merges = vocab_and_merges(words)
    files = {
        "vocab.json": json.dumps(vocab, ensure_ascii=False),
        "merges.txt": "#version: 0.2\n" + "\n".join(merges) + "\n",
    }
    for name, text in files.items():
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{name}.")
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, folder / name)
    return folder


def build_tokenizer(words: tuple[str, ...] = WORDS):
    """A ``CLIPTokenizer`` over the toy vocabulary; save it with ``save_tokenizer``."""
    from transformers import CLIPTokenizer

    vocab, merges = vocab_and_merges(words)
    tok = CLIPTokenizer(
        vocab=vocab,
        merges=[tuple(m.split(" ")) for m in merges],
        bos_token=BOS,
        eos_token=EOS,
        unk_token=EOS,
        pad_token=EOS,
        model_max_length=77,
    )
    for word in words:
        ids = tok(word, add_special_tokens=False).input_ids
        assert len(ids) == 1, f"toy word {word!r} is not one token: {ids}"
    return tok


def save_tokenizer(tok, folder: str | Path, words: tuple[str, ...] = WORDS) -> Path:
    """``tok.save_pretrained(folder)`` plus ``vocab.json``/``merges.txt`` (slow-tokenizer files)."""
    tok.save_pretrained(str(folder))
    return write_tokenizer_files(folder, words)

"""The toy tokenizer: one token per world word, round trip, unknown words, added tokens."""

import pytest

from personaseg.toyworld.scenes import make_scene
from personaseg.toyworld.vocab import WORDS, build_tokenizer, save_tokenizer


@pytest.fixture(scope="module")
def tok():
    return build_tokenizer()


def test_every_word_is_one_token(tok):
    for word in WORDS:
        assert len(tok(word, add_special_tokens=False).input_ids) == 1


def test_round_trip(tok):
    for seed in range(10):
        text = make_scene(seed).caption.replace(",", "")
        ids = tok(text).input_ids
        assert ids[0] == tok.bos_token_id and ids[-1] == tok.eos_token_id
        assert tok.decode(ids, skip_special_tokens=True).strip() == text
        assert len(ids) == len(text.split()) + 2  # one token per word


def test_unknown_text_does_not_crash_or_use_unk(tok):
    ids = tok("a zebra-striped teapot! ünïcode", add_special_tokens=False).input_ids
    assert ids and tok.eos_token_id not in ids


def test_added_tokens_like_textual_inversion(tok, tmp_path):
    save_tokenizer(tok, tmp_path)
    from transformers import CLIPTokenizer

    tok2 = CLIPTokenizer.from_pretrained(tmp_path)
    assert tok2.model_max_length == 77
    tok2.add_tokens(["<mymug>", "<mymug>_1"])
    ids = tok2("a <mymug> <mymug>_1 circle", add_special_tokens=False).input_ids
    assert ids[1:3] == tok2.convert_tokens_to_ids(["<mymug>", "<mymug>_1"])
    assert len(ids) == 4

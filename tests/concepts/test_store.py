"""ConceptStore and Concept: lookup, errors, import/export in diffusers and A1111 form, apply."""

import re
import shlex
import shutil
import subprocess

import pytest
import torch
from safetensors.torch import load_file, save_file

from personaseg.concepts import ConceptStore
from personaseg.concepts.store import default_root
from personaseg.errors import ConceptError

from .conftest import load_tiny


@pytest.fixture
def store(tmp_path):
    """A store with one imported 3-vector TI concept <mymug> of width 32."""
    s = ConceptStore(tmp_path / "store")
    torch.manual_seed(0)
    save_file({"<mymug>": torch.randn(3, 32)}, str(tmp_path / "mymug.safetensors"))
    s.import_(tmp_path / "mymug.safetensors")
    return s


def test_default_root_follows_personaseg_home(monkeypatch, tmp_path):
    monkeypatch.setenv("PERSONASEG_HOME", str(tmp_path))
    assert default_root() == tmp_path / "concepts"
    monkeypatch.delenv("PERSONASEG_HOME")
    assert default_root().parts[-2:] == ("personaseg", "concepts")


def test_get_list_remove(store):
    assert [c.name for c in store.list()] == ["mymug"]
    c = store.get("<mymug>")
    assert (c.name, c.token, c.method, c.num_vectors, c.width) == ("mymug", "<mymug>", "ti", 3, 32)
    assert store.get("mymug").path == c.path
    with pytest.raises(ConceptError) as err:
        store.get("<other>")
    assert ("unknown concept <other>: learn one with `personaseg learn PHOTOS --token '<other>'` (known: <mymug>)"
            in str(err.value))
    store.remove("<mymug>")
    assert store.list() == [] and not c.path.exists()


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_unknown_concept_hint_is_a_line_a_shell_takes(store):
    """The hint printed `--token <other>` unquoted: pasted into a shell, `<other>` is a redirection."""
    with pytest.raises(ConceptError) as err:
        store.get("<other>")
    command = re.search(r"`([^`]*)`", str(err.value)).group(1)
    assert subprocess.run(["bash", "-n", "-c", command], capture_output=True).returncode == 0, command
    assert shlex.split(command)[-2:] == ["--token", "<other>"]


def test_apply_returns_all_sub_tokens_and_is_idempotent(store, tiny_sd):
    c = store.get("mymug")
    pipe = load_tiny(tiny_sd)
    subs = c.apply(pipe)
    assert subs == ["<mymug>", "<mymug>_1", "<mymug>_2"]
    n = len(pipe.tokenizer)
    assert c.apply(pipe) == subs and len(pipe.tokenizer) == n
    assert c.prompt() == "a photo of a <mymug>"
    assert c.prompt(expand=True) == "a photo of a <mymug> <mymug>_1 <mymug>_2"
    assert pipe.maybe_convert_prompt(c.prompt(), pipe.tokenizer) == c.prompt(expand=True)
    ids = pipe.tokenizer(c.prompt(expand=True)).input_ids
    assert all(pipe.tokenizer.convert_tokens_to_ids(t) in ids for t in subs)


def test_apply_refuses_another_width(store, tiny_sd_wide):
    with pytest.raises(ConceptError, match=r"width 32 .* this model's is 48"):
        store.get("mymug").apply(load_tiny(tiny_sd_wide))


def test_apply_refuses_a_different_embedding_under_the_token(store, tiny_sd):
    pipe = load_tiny(tiny_sd)
    pipe.load_textual_inversion({"<mymug>": torch.zeros(3, 32)})
    with pytest.raises(ConceptError, match="another embedding"):
        store.get("mymug").apply(pipe)


def test_export_diffusers_and_a1111_load_back(store, tiny_sd, tmp_path):
    rows = store.get("mymug").embeddings()
    d = store.export("mymug", tmp_path / "out" / "d.safetensors")
    assert set(load_file(str(d))) == {"<mymug>"}
    a = store.export("mymug", tmp_path / "out", format="a1111")
    assert a.name == "mymug.safetensors" and set(load_file(str(a))) == {"emb_params"}
    for path, token in ((d, None), (a, "<mymug>")):
        pipe = load_tiny(tiny_sd)
        pipe.load_textual_inversion(str(path), token=token)
        ids = pipe.tokenizer.convert_tokens_to_ids(["<mymug>", "<mymug>_1", "<mymug>_2"])
        assert torch.equal(pipe.text_encoder.get_input_embeddings().weight[ids].detach(), rows)
    with pytest.raises(ConceptError, match="unknown export format"):
        store.export("mymug", tmp_path / "x", format="ckpt")


def test_import_a1111_and_folder(store, tmp_path):
    a = store.export("mymug", tmp_path / "my-style.safetensors", format="a1111")
    c = store.import_(a)
    assert c.token == "<my-style>" and torch.equal(c.embeddings(), store.get("mymug").embeddings())
    with pytest.raises(ConceptError, match="already exists"):
        store.import_(a)
    store.import_(a, force=True)
    copy = store.import_(store.get("mymug").path, name="mymug2")
    assert copy.token == "<mymug2>" and torch.equal(copy.embeddings(), store.get("mymug").embeddings())
    (tmp_path / "x.pt").write_bytes(b"not a pickle")
    with pytest.raises(ConceptError, match="pickle"):
        store.import_(tmp_path / "x.pt")
    (tmp_path / "bad.safetensors").write_bytes(b"garbage")
    with pytest.raises(ConceptError, match="not a readable"):
        store.import_(tmp_path / "bad.safetensors")
    assert not [p for p in store.root.iterdir() if p.name.startswith(".tmp")]

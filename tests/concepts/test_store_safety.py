"""The concept store as an adversarial user tries it (issue 21): a concept is its folder, nothing
outside the store is read or deleted, one writer per token, no half-written concept is ever
listed, and crafted files are one ConceptError."""

import json
import os
import shutil
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import save_file

from personaseg.concepts import ConceptStore
from personaseg.concepts.checkpoint import load_checkpoint, rng_state, save_checkpoint
from personaseg.concepts.store import StoreWarning
from personaseg.concepts.textual_inversion import parse_token
from personaseg.errors import ConceptError


@pytest.fixture
def store(tmp_path):
    """A store with one imported 2-vector TI concept <mymug> of width 32."""
    s = ConceptStore(tmp_path / "store")
    torch.manual_seed(0)
    save_file({"<mymug>": torch.randn(2, 32)}, str(tmp_path / "mymug.safetensors"))
    s.import_(tmp_path / "mymug.safetensors")
    return s


def _victim(tmp_path):
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "precious.txt").write_text("keep me")
    return victim


# ------------------------------------------------------------------ 1. a concept is its folder


def test_rm_of_a_copied_folder_removes_the_copy_not_the_original(store):
    shutil.copytree(store.root / "mymug", store.root / "mymug-backup")
    assert store.names() == ["mymug", "mymug-backup"]
    backup = store.get("mymug-backup")
    assert (backup.name, backup.token) == ("mymug-backup", "<mymug-backup>")
    assert torch.equal(backup.embeddings(), store.get("mymug").embeddings())  # learned as <mymug>: still readable
    store.remove("mymug-backup")
    assert store.names() == ["mymug"] and (store.root / "mymug" / "concept.json").is_file()


def test_names_from_concept_json_never_lead_outside_the_store(store, tmp_path):
    victim = _victim(tmp_path)
    evil = store.root / "evil"
    shutil.copytree(store.root / "mymug", evil)
    meta = json.loads((evil / "concept.json").read_text())
    (evil / "concept.json").write_text(json.dumps({**meta, "name": "../../victim", "token": "<../../victim>"}))
    assert store.get("evil").path == evil and store.get("evil").name == "evil"
    for name in ("../../victim", "<../../victim>", "..", "../victim", "/tmp", "a/b", ".runs", ".tmp.1.abcdef12.mymug"):
        for call in (store.get, store.remove, store.export, store.path):
            with pytest.raises(ConceptError, match="not a concept name"):
                call(name)
    store.remove("evil")
    assert (victim / "precious.txt").read_text() == "keep me" and store.names() == ["mymug"]


def test_a_link_in_the_store_to_a_folder_outside_is_not_a_concept(store, tmp_path):
    victim = _victim(tmp_path)
    shutil.copy(store.root / "mymug" / "concept.json", victim / "concept.json")
    (store.root / "linked").symlink_to(victim, target_is_directory=True)
    assert store.names() == ["mymug"]
    with pytest.raises(ConceptError, match="outside the concept store"):
        store.remove("linked")
    assert (victim / "precious.txt").read_text() == "keep me"


# ------------------------------------------------------------------ 2. one writer per token

HOLD = """
import sys, time
from personaseg.concepts import ConceptStore
with ConceptStore(sys.argv[1]).lock("mymug"):
    print("held", flush=True)
    time.sleep(60)
"""


def test_a_second_writer_of_a_token_is_refused_naming_the_holder(store, tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(store.root)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(ConceptError, match=rf"<mymug> is being learned or written .*pid {holder.pid}"):
            with store.writing("mymug", force=True):
                pass
        with pytest.raises(ConceptError, match="being learned"):
            store.remove("mymug")
        with store.writing("other"):  # another token is free
            pass
    finally:
        holder.kill()
        holder.wait()
    store.remove("mymug")  # the holder died: its lock went with it
    assert not (store.root / "mymug").exists()


def test_a_lock_file_left_by_a_dead_process_is_stale(store):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (store.root / ".locks").mkdir()
    (store.root / ".locks" / "mymug.lock").write_text(f"{dead.pid}\n")
    store.remove("mymug")
    assert store.names() == [] and not (store.root / ".locks").exists()


def test_learn_takes_the_lock_before_loading_a_model(tmp_path, monkeypatch):
    from personaseg.concepts import learning

    seen = []
    monkeypatch.setattr(learning, "_learn", lambda *a, **kw: seen.append(sorted(os.listdir(tmp_path / "s" / ".locks"))))
    learning.learn(tmp_path, "<mymug>", concepts_dir=tmp_path / "s")
    assert seen == [["mymug.lock"]] and not (tmp_path / "s").exists()


# ------------------------------------------------------------------ 3. half-written concepts


def test_leftovers_of_a_killed_write_are_never_listed_and_are_cleaned_up(store):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    legacy = store.root / ".tmp-mymug-0123abcd"  # what a kill -9 left before pids were recorded
    shutil.copytree(store.root / "mymug", legacy)
    old = time.time() - 3600
    os.utime(legacy, (old, old))
    stale = store.root / f".tmp.{dead.pid}.89abcdef.mymug"
    shutil.copytree(store.root / "mymug", stale)
    live = store.root / f".tmp.{os.getpid()}.01234567.other"  # a write in progress right now
    live.mkdir()
    assert store.names() == ["mymug"]
    assert [c.name for c in store.list()] == ["mymug"]
    assert not legacy.exists() and not stale.exists() and live.exists()


def test_a_replace_cut_short_between_its_renames_gets_the_old_concept_back(store):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    os.replace(store.root / "mymug", store.root / f".old.{dead.pid}.0badf00d.mymug")
    assert store.names() == []
    store.list()
    assert store.names() == ["mymug"] and store.get("mymug").embeddings().shape == (2, 32)


def test_a_failed_write_leaves_the_old_concept_and_no_temp_folder(store):
    before = store.get("mymug").embeddings()
    with pytest.raises(RuntimeError):
        with store.writing("mymug", force=True) as tmp:
            (tmp / "half").write_text("x")
            raise RuntimeError("killed")
    assert torch.equal(store.get("mymug").embeddings(), before)
    assert sorted(p.name for p in store.root.iterdir()) == ["mymug"]


# ------------------------------------------------------------------ 4. crafted files


@pytest.mark.parametrize("content", [
    "[]", "null", "", "{not json", '{"name": "x"}', b"\xff\xfe".decode("latin-1"),
    "WIDTH_NULL", "WIDTH_LIST", "NUM_VECTORS_0", "METHOD_X", "TEMPLATE_DICT", "PRESENCE_NAN", "DEEP",
])
def test_a_broken_concept_json_is_skipped_by_list_and_refused_by_get(store, content):
    good = json.loads((store.root / "mymug" / "concept.json").read_text())
    edits = {"WIDTH_NULL": {"width": None}, "WIDTH_LIST": {"width": [32]}, "NUM_VECTORS_0": {"num_vectors": 0},
             "METHOD_X": {"method": "x"}, "TEMPLATE_DICT": {"prompt_template": {}}, "PRESENCE_NAN": {"presence_ref": float("nan")}}
    bad = store.root / "bad"
    shutil.copytree(store.root / "mymug", bad)
    text = json.dumps({**good, **edits[content]}) if content in edits else content
    text = "[" * 100_000 + "]" * 100_000 if content == "DEEP" else text  # RecursionError in json
    (bad / "concept.json").write_text(text, encoding="latin-1")
    with pytest.warns(StoreWarning, match=r"concept folder .*bad is broken"):
        assert [c.name for c in store.list()] == ["mymug"]
    with pytest.raises(ConceptError, match="is broken"):
        store.get("bad")
    store.remove("bad")  # a broken concept can still be removed
    assert store.names() == ["mymug"]


@pytest.mark.parametrize("tensor", [torch.zeros(0, 32), torch.zeros(2, 3, 32), torch.zeros(2, 0),
                                    torch.full((1, 32), float("nan")), torch.ones(1, 32, dtype=torch.int64),
                                    torch.zeros(80, 32)])
def test_import_refuses_an_embedding_of_another_shape(store, tmp_path, tensor):
    path = tmp_path / "bad-emb.safetensors"
    save_file({"<bad>": tensor}, str(path))
    with pytest.raises(ConceptError, match="not an embedding|NaN|not float"):
        store.import_(path)
    assert store.names() == ["mymug"]


def test_a_hand_edited_embedding_is_refused_by_export_and_by_a_folder_import(store, tmp_path):
    save_file({"<mymug>": torch.zeros(2, 16)}, str(store.root / "mymug" / "learned_embeds.safetensors"))
    with pytest.raises(ConceptError, match="width 16, but the concept's width is 32"):
        store.export("mymug", tmp_path / "out.safetensors")
    with pytest.raises(ConceptError, match="width 16"):
        store.import_(store.root / "mymug", name="again")
    save_file({"<mymug>": torch.zeros(3, 32)}, str(store.root / "mymug" / "learned_embeds.safetensors"))
    with pytest.raises(ConceptError, match="holds 3 vectors, but concept.json says 2"):
        store.export("mymug", tmp_path / "out.safetensors")
    assert not (tmp_path / "out.safetensors").exists() and store.names() == ["mymug"]


def _checkpoint(path):
    p = torch.nn.Parameter(torch.randn(1, 32))
    opt = torch.optim.AdamW([p])
    save_checkpoint(path, {"trainable": {"rows": p.detach()}, "optimizer": opt.state_dict(), "scheduler": {},
                           "scaler": None, "rng": rng_state(), "hardest": None, "token": "<mymug>", "force": False,
                           "photos": ["00"], "config": {}, "base_model": "toy", "train_seconds": 1.0, "step": 3,
                           "losses": [0.5]})


@pytest.mark.parametrize("damage", ["truncate", "garbage", "no-tree", "tree-list", "bad-tensor-key", "rng-short",
                                    "step-text"])
def test_a_damaged_checkpoint_is_one_concept_error(tmp_path, damage):
    path = tmp_path / "checkpoint.safetensors"
    _checkpoint(path)
    assert load_checkpoint(path)["step"] == 3
    data = path.read_bytes()
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + n])
    tree = json.loads(header["__metadata__"]["personaseg_checkpoint"])
    if damage == "truncate":
        data = data[: len(data) // 2]
    elif damage == "garbage":
        data = data[:8] + b"\x00" * n + data[8 + n:]
    else:
        if damage == "no-tree":
            tree.pop("tree")
        elif damage == "tree-list":
            tree["tree"] = []
        elif damage == "bad-tensor-key":
            tree["tree"]["__d__"][0][1] = {"__t__": "nope"}
        elif damage == "rng-short":
            header["s.rng.0"] = header.get("s.rng.0")  # keep the tensors; cut the python state instead
            entries = dict((k["__t__"] if isinstance(k, dict) else k, v) for k, v in tree["tree"]["__d__"])
            entries["rng"]["__d__"] = [kv for kv in entries["rng"]["__d__"] if kv[0] != "python"]
        elif damage == "step-text":
            tree["tree"]["__d__"] = [[k, "3" if k == "step" else v] for k, v in tree["tree"]["__d__"]]
        header["__metadata__"]["personaseg_checkpoint"] = json.dumps(tree)
        raw = json.dumps(header).encode()
        data = len(raw).to_bytes(8, "little") + raw + data[8 + n:]
    path.write_bytes(data)
    with pytest.raises(ConceptError, match="checkpoint .* is unreadable"):
        load_checkpoint(path)


# ------------------------------------------------------------------ 5. names checked first


@pytest.mark.parametrize("token", ["<" + "m" * 300 + ">", "<con>", "<NUL.txt>", "<com1>", "<mug.>", "<../x>",
                                   "<.hidden>", "<mug/x>", "<müg>"])
def test_tokens_that_cannot_name_a_folder_everywhere_are_refused(token):
    with pytest.raises(ConceptError, match="characters|characters long|reserved"):
        parse_token(token)


def test_a_long_token_fails_before_any_model_loads(tmp_path, monkeypatch):
    from personaseg.concepts import learn

    def no_model(*a, **kw):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr("personaseg.models.load_pipeline", no_model)
    with pytest.raises(ConceptError, match="300 characters long"):
        learn(tmp_path, "<" + "m" * 300 + ">", model="toy", concepts_dir=tmp_path / "s")
    assert not (tmp_path / "s").exists()


def test_a_class_word_never_leads_the_class_images_out_of_the_store(tmp_path, monkeypatch):
    from PIL import Image

    from personaseg.concepts import LearnConfig, prior

    folders = []

    def generate(pipe, folder, cfg, progress):
        folders.append(folder)
        Image.new("RGB", (8, 8)).save(folder / "class_0000.png")

    monkeypatch.setattr(prior, "generate", generate)
    root = tmp_path / "store"
    cfg = LearnConfig(class_word="../../../escape", resolution=8, method="lora", prior_preservation=True)
    prior.class_photos(None, cfg, root, "toy", False)
    assert folders[0].parent == root / ".class-images" and folders[0].name.startswith("escape-")
    assert not (tmp_path / "escape").exists()


# ------------------------------------------------------------------ 7, 8. export and import never overwrite or follow links


def test_export_never_replaces_an_existing_file_without_force(store, tmp_path):
    unrelated = tmp_path / "existing.txt"
    unrelated.write_text("my notes")
    with pytest.raises(ConceptError, match="existing.txt exists.*--force"):
        store.export("mymug", unrelated)
    assert unrelated.read_text() == "my notes"
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "mymug.safetensors").write_text("older")
    with pytest.raises(ConceptError, match="exists"):
        store.export("mymug", tmp_path / "dir")
    assert store.export("mymug", unrelated, force=True) == unrelated
    assert unrelated.read_bytes()[:8] != b"my notes"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_import_of_a_folder_copies_regular_files_only(store, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("system file")
    src = tmp_path / "shared"
    shutil.copytree(store.root / "mymug", src)
    (src / "notes.txt").symlink_to(secret)
    (src / "readme.txt").write_text("hello")
    (src / "sub").mkdir()
    with pytest.warns(StoreWarning, match="notes.txt"):
        c = store.import_(src, name="shared")
    assert sorted(p.name for p in c.path.iterdir()) == ["concept.json", "learned_embeds.safetensors", "readme.txt"]
    os.replace(src / "concept.json", tmp_path / "real.json")
    (src / "concept.json").symlink_to(tmp_path / "real.json")
    with pytest.raises(ConceptError, match="not a concept folder"):
        store.import_(src, name="shared2")


def test_a_checkpoint_that_does_not_fit_the_run_is_one_concept_error_on_resume(pipe, photos, tmp_path, tiny_cfg,
                                                                               ctrl_c_after):
    from personaseg.concepts import LearnInterrupted, learn

    disarm = ctrl_c_after(1)  # Ctrl-C right after the first step: a checkpoint is saved
    root = tmp_path / "s"
    with pytest.raises(LearnInterrupted):
        learn(photos, "<mymug>", tiny_cfg(steps=3), pipe=pipe, concepts_dir=root, progress=False)
    disarm()
    ckpt = root / ".runs" / "mymug" / "checkpoint.safetensors"
    for edit in ("shape", "names"):
        state = load_checkpoint(ckpt)
        rows = next(iter(state["trainable"].values()))
        state["trainable"] = {"other": rows} if edit == "names" else {k: torch.zeros(5, 7) for k in state["trainable"]}
        save_checkpoint(ckpt, state)
        with pytest.raises(ConceptError, match="does not fit this run"):
            learn(photos, "<mymug>", None, pipe=pipe, concepts_dir=root, resume=True, progress=False)
    assert not (root / "mymug").exists()


def test_without_flock_the_pid_in_the_lock_file_decides(store, monkeypatch):
    import errno

    from personaseg.concepts import locks

    def no_flock(fd, op):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(locks.fcntl, "flock", no_flock)
    (store.root / ".locks").mkdir()
    lock = store.root / ".locks" / "mymug.lock"
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        lock.write_text(f"{live.pid}\n")
        with pytest.raises(ConceptError, match=f"pid {live.pid}"):
            store.remove("mymug")
    finally:
        live.kill()
        live.wait()
    lock.write_text(f"{live.pid}\n")  # dead now: stale
    store.remove("mymug")
    assert store.names() == []

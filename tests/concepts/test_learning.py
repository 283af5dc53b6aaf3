"""The training loop: resume = uninterrupted, Ctrl-C, checkpoints, --force, bad input."""

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from personaseg.concepts import LearnInterrupted, learn
from personaseg.concepts.trainer import Trainer
from personaseg.errors import ConceptError, ConfigError, InputError


def _tensors(concept) -> dict[str, torch.Tensor]:
    out = dict(load_file(str(concept.path / "learned_embeds.safetensors")))
    lora = concept.path / "pytorch_lora_weights.safetensors"
    if lora.exists():
        out.update(load_file(str(lora)))
    return out


@pytest.mark.parametrize("method", ["ti", "lora"])
def test_resume_ends_where_an_uninterrupted_run_ends(method, pipe, photos, tmp_path, tiny_cfg, ctrl_c_after,
                                                    monkeypatch):
    cfg = tiny_cfg(method=method, steps=4, grad_accum=2, batch_size=2, lr=1e-2, vectors=2,
                   lr_scheduler="cosine", lr_warmup_steps=1)
    straight = learn(photos, "<mymug>", cfg, pipe=pipe, concepts_dir=tmp_path / "a", progress=False)

    ctrl_c_after(2)
    with pytest.raises(LearnInterrupted, match="interrupted at step 2/4") as err:
        learn(photos, "<mymug>", cfg, pipe=pipe, concepts_dir=tmp_path / "b", progress=False)
    assert "--resume" in str(err.value) and err.value.exit_code != 0
    ckpt = tmp_path / "b" / ".runs" / "mymug" / "checkpoint.safetensors"
    assert ckpt.exists() and not (tmp_path / "b" / "mymug").exists()
    assert [p.name for p in ckpt.parent.iterdir()] == ["checkpoint.safetensors"]  # no temp files

    monkeypatch.undo()
    torch.manual_seed(123)  # the checkpoint restores the global RNG too
    resumed = learn(photos, "<mymug>", None, pipe=pipe, concepts_dir=tmp_path / "b", resume=True, progress=False)
    a, b = _tensors(straight), _tensors(resumed)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert straight.meta["final_loss"] == resumed.meta["final_loss"]
    assert not ckpt.parent.exists()


def test_resume_rules(pipe, photos, store_dir, tiny_cfg, ctrl_c_after, monkeypatch):
    with pytest.raises(ConceptError, match="no interrupted run of <mymug>"):
        learn(photos, "<mymug>", tiny_cfg(), pipe=pipe, concepts_dir=store_dir, resume=True, progress=False)
    ctrl_c_after(1)
    with pytest.raises(LearnInterrupted):
        learn(photos, "<mymug>", tiny_cfg(steps=3), pipe=pipe, concepts_dir=store_dir, progress=False)
    monkeypatch.undo()
    with pytest.raises(ConceptError, match="interrupted run of <mymug> exists.*--resume"):
        learn(photos, "<mymug>", tiny_cfg(steps=3), pipe=pipe, concepts_dir=store_dir, progress=False)
    with pytest.raises(ConceptError, match=r"other settings \(steps 3 -> 5\)"):
        learn(photos, "<mymug>", tiny_cfg(steps=5), pipe=pipe, concepts_dir=store_dir, resume=True, progress=False)
    Image.new("RGB", (40, 40), "red").save(photos / "new.png")
    with pytest.raises(ConceptError, match="photos differ"):
        learn(photos, "<mymug>", None, pipe=pipe, concepts_dir=store_dir, resume=True, progress=False)
    concept = learn(photos, "<mymug>", tiny_cfg(steps=1), pipe=pipe, concepts_dir=store_dir, force=True, progress=False)
    assert concept.meta["steps"] == 1 and not (store_dir / ".runs" / "mymug").exists()


def test_periodic_checkpoints_are_removed_after_success(pipe, photos, store_dir, tiny_cfg, monkeypatch):
    saved = []
    import personaseg.concepts.loop as loop

    original = loop.save_checkpoint
    monkeypatch.setattr(loop, "save_checkpoint", lambda path, state: (saved.append(state["step"]), original(path, state)))
    learn(photos, "<mymug>", tiny_cfg(steps=3, checkpoint_every=1), pipe=pipe, concepts_dir=store_dir, progress=False)
    assert saved == [1, 2] and not (store_dir / ".runs" / "mymug").exists()


def test_force_rules(pipe, photos, store_dir, tiny_cfg):
    first = learn(photos, "<mymug>", tiny_cfg(steps=1), pipe=pipe, concepts_dir=store_dir, progress=False)
    with pytest.raises(ConceptError, match="already exists.*--force"):
        learn(photos, "<mymug>", tiny_cfg(steps=1), pipe=pipe, concepts_dir=store_dir, progress=False)
    rows = first.embeddings()
    second = learn(photos, "<mymug>", tiny_cfg(steps=1, seed=1, lr=0.1), pipe=pipe, concepts_dir=store_dir,
                   force=True, progress=False)
    assert not torch.equal(second.embeddings(), rows)
    assert sorted(p.name for p in store_dir.iterdir()) == ["mymug"]  # no temp or old folders left


def test_bad_photos(pipe, tmp_path, store_dir, tiny_cfg):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="no images found"):
        learn(empty, "<mymug>", tiny_cfg(), pipe=pipe, concepts_dir=store_dir, progress=False)
    (empty / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    with pytest.warns(UserWarning), pytest.raises(InputError, match="none of the 1 files"):
        learn(empty, "<mymug>", tiny_cfg(), pipe=pipe, concepts_dir=store_dir, progress=False)
    with pytest.raises(InputError):
        learn(tmp_path / "missing", "<mymug>", tiny_cfg(), pipe=pipe, concepts_dir=store_dir, progress=False)


def test_bad_token_and_method(pipe, photos, store_dir, tiny_cfg):
    with pytest.raises(ConceptError, match="space"):
        learn(photos, "<my mug>", tiny_cfg(), pipe=pipe, concepts_dir=store_dir, progress=False)
    with pytest.raises(ConfigError, match="unknown method"):
        learn(photos, "<mymug>", tiny_cfg(method="textual"), pipe=pipe, concepts_dir=store_dir, progress=False)


def test_half_precision_pipe_needs_mixed_precision(pipe, photos, store_dir, tiny_cfg):
    pipe.to(torch.bfloat16)
    with pytest.raises(ConfigError, match="--mixed-precision"):
        learn(photos, "<mymug>", tiny_cfg(), pipe=pipe, concepts_dir=store_dir, progress=False)


def test_bf16_autocast_keeps_trainable_weights_fp32(tiny_sd, photos, store_dir, tiny_cfg, monkeypatch):
    """Mixed precision through accelerate (bf16 runs on a CPU): frozen weights in bf16, trainable fp32."""
    seen = {}
    original = Trainer.result

    def result(self):
        seen["rows"] = self.rows.rows.dtype
        seen["lora"] = {p.dtype for n, p in self.pipe.unet.named_parameters() if "lora" in n}
        seen["frozen"] = self.pipe.unet.conv_in.weight.dtype
        seen["autocast"] = self.acc.native_amp
        return original(self)

    monkeypatch.setattr(Trainer, "result", result)
    concept = learn(photos, "<mymug>", tiny_cfg(method="lora", mixed_precision="bf16"), model=str(tiny_sd),
                    concepts_dir=store_dir, progress=False)
    assert seen == {"rows": torch.float32, "lora": {torch.float32}, "frozen": torch.bfloat16, "autocast": True}
    tensors = _tensors(concept)
    assert all(t.dtype == torch.float32 and torch.isfinite(t).all() for t in tensors.values())
    # a later run in the same process with other settings gets a fresh accelerate state
    learn(photos, "<other>", tiny_cfg(), model=str(tiny_sd), concepts_dir=store_dir, progress=False)


def test_resume_with_the_same_settings_on_a_model_whose_card_fills_some(tiny_sd, photos, store_dir, tiny_cfg,
                                                                         ctrl_c_after, monkeypatch, tmp_path):
    import json
    import shutil

    model = tmp_path / "model"
    shutil.copytree(tiny_sd, model)
    card = json.loads((model / "personaseg.json").read_text())
    card["learn"] = {"templates": ["a {}"]}
    (model / "personaseg.json").write_text(json.dumps(card))
    ctrl_c_after(1)
    with pytest.raises(LearnInterrupted):
        learn(photos, "<mymug>", tiny_cfg(steps=2), model=str(model), concepts_dir=store_dir, progress=False)
    monkeypatch.undo()
    # the same command again with --resume: the card fills templates as before (it was refused)
    concept = learn(photos, "<mymug>", tiny_cfg(steps=2), model=str(model), concepts_dir=store_dir, resume=True,
                    progress=False)
    assert concept.meta["steps"] == 2 and concept.meta["config"]["templates"] == ["a {}"]
    ctrl_c_after(1)
    with pytest.raises(LearnInterrupted):
        learn(photos, "<b>", tiny_cfg(steps=2), model=str(model), concepts_dir=store_dir, progress=False)
    monkeypatch.undo()
    with pytest.raises(ConceptError, match=r"other settings \(templates \['a \{\}'\] -> \['x \{\}'\]\)"):
        learn(photos, "<b>", tiny_cfg(steps=2, templates=["x {}"]), model=str(model), concepts_dir=store_dir,
              resume=True, progress=False)


def test_a_progress_function_sees_every_step_and_can_stop_the_run(pipe, photos, store_dir, tiny_cfg):
    """What a web page or notebook uses: told (step, total, loss) each step; True stops with a checkpoint."""
    seen = []

    def told(step, total, loss):
        seen.append((step, total))
        return step == 2  # "stop" pressed during step 2

    with pytest.raises(LearnInterrupted, match="interrupted at step 2/4"):
        learn(photos, "<mymug>", tiny_cfg(steps=4), pipe=pipe, concepts_dir=store_dir, progress=told)
    assert seen == [(1, 4), (2, 4)]
    assert (store_dir / ".runs" / "mymug" / "checkpoint.safetensors").exists() and not (store_dir / "mymug").exists()
    seen.clear()
    concept = learn(photos, "<mymug>", None, pipe=pipe, concepts_dir=store_dir, resume=True, progress=lambda *a: seen.append(a))
    assert [s[:2] for s in seen] == [(3, 4), (4, 4)] and all(s[2] > 0 for s in seen)
    assert concept.meta["steps"] == 4

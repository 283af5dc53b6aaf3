"""A single-file checkpoint in the original (CompVis/LDM) layout loads with no network: the SD 1.x /
2.x configs and the CLIP tokenizer are shipped. Tested on a tiny pipeline written in that layout
(the shipped configs are SD-sized, so the tiny one stands in for them), and the shipped configs on
their own (models built on the meta device, the tokenizer against CLIP's known ids)."""

import json
import re
import shutil
import socket

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from personaseg import single_file
from personaseg.errors import ModelError


# ------------------------------------------------ diffusers -> original layout (the inverse of
# diffusers' convert_ldm_*_checkpoint; its scripts/convert_diffusers_to_original_stable_diffusion.py
# hard-codes SD's block counts, these take them from the config)

RESNET = [("norm1", "in_layers.0"), ("conv1", "in_layers.2"), ("norm2", "out_layers.0"), ("conv2", "out_layers.3"),
          ("time_emb_proj", "emb_layers.1"), ("conv_shortcut", "skip_connection")]


def unet_to_ldm(unet) -> dict[str, torch.Tensor]:
    L = unet.config.layers_per_block
    prefixes = {"time_embedding.linear_1.": "time_embed.0.", "time_embedding.linear_2.": "time_embed.2.",
                "conv_in.": "input_blocks.0.0.", "conv_norm_out.": "out.0.", "conv_out.": "out.2.",
                "mid_block.attentions.0.": "middle_block.1."}
    for j in range(2):
        prefixes[f"mid_block.resnets.{j}."] = f"middle_block.{2 * j}."
    for i, block in enumerate(unet.down_blocks):
        for j in range(L):
            prefixes[f"down_blocks.{i}.resnets.{j}."] = f"input_blocks.{i * (L + 1) + j + 1}.0."
            prefixes[f"down_blocks.{i}.attentions.{j}."] = f"input_blocks.{i * (L + 1) + j + 1}.1."
        prefixes[f"down_blocks.{i}.downsamplers.0.conv."] = f"input_blocks.{(i + 1) * (L + 1)}.0.op."
    for i, block in enumerate(unet.up_blocks):
        for j in range(L + 1):
            prefixes[f"up_blocks.{i}.resnets.{j}."] = f"output_blocks.{i * (L + 1) + j}.0."
            prefixes[f"up_blocks.{i}.attentions.{j}."] = f"output_blocks.{i * (L + 1) + j}.1."
        prefixes[f"up_blocks.{i}.upsamplers.0."] = \
            f"output_blocks.{i * (L + 1) + L}.{2 if getattr(block, 'attentions', None) else 1}."
    out = {}
    for key, value in unet.state_dict().items():
        hf = next(p for p in sorted(prefixes, key=len, reverse=True) if key.startswith(p))
        rest = key[len(hf):]
        if ".resnets." in hf:
            for a, b in RESNET:
                rest = re.sub(rf"^{a}\.", f"{b}.", rest)
        out["model.diffusion_model." + prefixes[hf] + rest] = value
    return out


def vae_to_ldm(vae) -> dict[str, torch.Tensor]:
    n = len(vae.config.block_out_channels)
    out = {}
    for key, value in vae.state_dict().items():
        k = key
        for i in range(n):
            k = k.replace(f"encoder.down_blocks.{i}.resnets.", f"encoder.down.{i}.block.")
            k = k.replace(f"encoder.down_blocks.{i}.downsamplers.0.", f"encoder.down.{i}.downsample.")
            k = k.replace(f"decoder.up_blocks.{i}.resnets.", f"decoder.up.{n - 1 - i}.block.")
            k = k.replace(f"decoder.up_blocks.{i}.upsamplers.0.", f"decoder.up.{n - 1 - i}.upsample.")
        for i in range(2):
            k = k.replace(f"mid_block.resnets.{i}.", f"mid.block_{i + 1}.")
        k = k.replace("conv_shortcut", "nin_shortcut").replace("conv_norm_out", "norm_out")
        if "mid_block.attentions.0." in k:
            k = k.replace("mid_block.attentions.0.", "mid.attn_1.")
            for a, b in (("group_norm.", "norm."), ("to_q.", "q."), ("to_k.", "k."), ("to_v.", "v."),
                         ("to_out.0.", "proj_out.")):
                k = k.replace(a, b)
            if k.endswith(("q.weight", "k.weight", "v.weight", "proj_out.weight")):
                value = value[:, :, None, None]  # linear -> 1x1 conv, as the original stores them
        out["first_stage_model." + k] = value
    return out


@pytest.fixture(scope="module")
def tiny_file(tmp_path_factory, tiny_model_dir):
    """(the tiny pipeline as a diffusers folder, its configs only, the same weights as one LDM file)."""
    from diffusers import StableDiffusionPipeline
    from transformers import CLIPTextConfig, CLIPTextModel

    root = tmp_path_factory.mktemp("single-file")
    base = StableDiffusionPipeline.from_pretrained(tiny_model_dir)
    torch.manual_seed(0)  # a text encoder that reads CLIP's vocabulary (49408 tokens), still tiny
    te = CLIPTextModel(CLIPTextConfig(vocab_size=49408, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                      num_attention_heads=4, max_position_embeddings=77))
    pipe = StableDiffusionPipeline(vae=base.vae, text_encoder=te, tokenizer=single_file.clip_tokenizer(),
                                   unet=base.unet, scheduler=base.scheduler, safety_checker=None,
                                   feature_extractor=None, requires_safety_checker=False)
    pipe.save_pretrained(root / "folder")
    configs = root / "configs"  # what would be shipped for this architecture: JSON only
    for f in (root / "folder").rglob("*.json"):
        if f.parent.name != "tokenizer":
            (configs / f.relative_to(root / "folder")).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(f, configs / f.relative_to(root / "folder"))
    state = {**unet_to_ldm(pipe.unet), **vae_to_ldm(pipe.vae),
             **{"cond_stage_model.transformer.text_model." + k.removeprefix("text_model."): v
                for k, v in te.state_dict().items()}}  # the original layout, whatever transformers calls it
    save_file({k: v.contiguous() for k, v in state.items()}, str(root / "tiny.safetensors"))
    return root / "folder", configs, root / "tiny.safetensors"


@pytest.fixture
def no_network(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    def refuse(*args, **kwargs):
        raise AssertionError("the network was touched")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def test_a_single_file_loads_offline_and_segments_as_its_folder(tiny_file, no_network, monkeypatch):
    from personaseg.config import FindConfig
    from personaseg.models import load_pipeline
    from personaseg.segmenter import Segmenter

    folder, configs, path = tiny_file
    monkeypatch.setitem(single_file.FAMILIES, "v1", configs)  # the tiny architecture's configs for SD 1.x's
    pipe, card = load_pipeline(str(path), device="cpu")
    want, _ = load_pipeline(str(folder), device="cpu")
    for name in ("unet", "vae", "text_encoder"):
        got, ref = getattr(pipe, name).state_dict(), getattr(want, name).state_dict()
        assert all(torch.equal(got[k], ref[k]) for k in ref), name
    assert pipe.tokenizer("a photo of a cat").input_ids == [49406, 320, 1125, 539, 320, 2368, 49407]
    image = Image.fromarray((np.random.default_rng(0).random((40, 56, 3)) * 255).astype("uint8"))
    results = []
    for p in (pipe, want):
        seg = Segmenter(p, None, FindConfig(draws=1, long_side=64))
        seg.set_image(image)
        results.append(seg.find("cat").scores)
    assert np.allclose(results[0], results[1], atol=1e-6)


def test_the_shipped_configs_are_sd_1_and_2():
    """The shipped folders describe SD 1.5 and 2.1: models built from them (no weights) have SD's
    blocks and widths, and the tokenizer gives CLIP's ids (SD 2.x pads with "!")."""
    from accelerate import init_empty_weights
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig

    from personaseg.layers import SD_CROSS_BLOCKS, layer_map_for, list_blocks

    for family, width in (("v1", 768), ("v2", 1024)):
        folder = single_file.FAMILIES[family]
        with init_empty_weights():
            unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(folder / "unet"))
            AutoencoderKL.from_config(AutoencoderKL.load_config(folder / "vae"))
        assert unet.config.cross_attention_dim == width and len(list_blocks(unet)) == 16
        assert [b.index for b in layer_map_for(unet).cross] == list(SD_CROSS_BLOCKS)
        assert CLIPTextConfig.from_pretrained(folder / "text_encoder").hidden_size == width
        index = json.loads((folder / "model_index.json").read_text())
        assert index["_class_name"] == "StableDiffusionPipeline" and index["safety_checker"] == [None, None]
        tok = single_file.clip_tokenizer(family)
        assert len(tok) == 49408 and tok("a photo of a cat").input_ids == [49406, 320, 1125, 539, 320, 2368, 49407]
        assert tok.pad_token == ("!" if family == "v2" else "<|endoftext|>")


@pytest.mark.parametrize("keys, match", [
    ({single_file.UNET_IN: (320, 4, 3, 3), single_file.V2_CROSS: (320, 1024)}, None),
    ({single_file.UNET_IN: (320, 9, 3, 3)}, "9 input channels"),
    ({single_file.UNET_IN: (320, 4, 3, 3), "conditioner.embedders.0.x": (1,)}, "SDXL"),
    ({"model.x": (1,)}, "not a Stable Diffusion checkpoint"),
])
def test_checkpoint_family(tmp_path, keys, match):
    path = tmp_path / "m.safetensors"
    save_file({k: torch.zeros(shape, dtype=torch.float16) for k, shape in keys.items()}, str(path))
    if match is None:
        assert single_file.checkpoint_family(path) == "v2"
    else:
        with pytest.raises(ModelError, match=match):
            single_file.checkpoint_family(path)
    (tmp_path / "bad.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(ModelError, match="not a readable"):
        single_file.checkpoint_family(tmp_path / "bad.safetensors")

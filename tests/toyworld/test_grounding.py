"""Attention grounding: same UNet outputs as diffusers' processor, word positions, the loss."""

import numpy as np
import torch

from personaseg.toyworld import grounding
from personaseg.toyworld.model import ToyModelConfig, build_unet
from personaseg.toyworld.scenes import caption_words, make_scene
from personaseg.toyworld.vocab import build_tokenizer

TINY = ToyModelConfig(unet_channels=(16, 16, 16), unet_heads=(2, 2, 2), text_hidden=16)


def test_grounded_processor_matches_default_and_records():
    torch.manual_seed(0)
    unet = build_unet(TINY).eval()
    x, t, text = torch.randn(2, 4, 32, 32), torch.tensor([10, 500]), torch.randn(2, 77, 16)
    with torch.no_grad():
        ref = unet(x, t, text).sample
        with grounding.Grounding(unet) as hooks:
            out = unet(x, t, text).sample
    store = hooks.store
    assert torch.allclose(ref, out, atol=1e-5)
    assert len(store) == 7  # every cross-attention of the toy UNet
    assert all(p.shape[0] == 2 and p.shape[2] == 77 for p in store)
    assert torch.allclose(store[0].sum(-1), torch.ones_like(store[0][..., 0]))
    with torch.no_grad():
        assert torch.allclose(unet(x, t, text).sample, ref, atol=1e-5)


def test_grounding_puts_back_the_processors_it_found():
    """On exit (even on error) the UNet gets back the processors it had, not diffusers' defaults; a
    snapshot's copy has them too, while training goes on hooked (issue 20, item 6)."""
    from diffusers.models.attention_processor import AttnProcessor

    unet = build_unet(TINY)
    unet.set_attn_processor(AttnProcessor())  # someone's own choice, not the default AttnProcessor2_0
    before = unet.attn_processors
    try:
        with grounding.Grounding(unet, fp32_self=True) as hooks:
            assert all(isinstance(p, (grounding.GroundedAttnProcessor, grounding.Fp32AttnProcessor))
                       for p in unet.attn_processors.values())
            copy = hooks.plain_copy()
            assert all(type(p) is AttnProcessor for p in copy.attn_processors.values())
            assert isinstance(next(iter(unet.attn_processors.values())), grounding.Fp32AttnProcessor)
            raise KeyError("boom")
    except KeyError:
        pass
    assert unet.attn_processors == before


def test_fp32_self_attention_under_autocast():
    """fp32_self: under bf16 autocast the self-attention runs (and returns) fp32, equal to the
    default processor in fp32; without autocast nothing changes."""
    torch.manual_seed(0)
    unet = build_unet(TINY).eval()
    x, t, text = torch.randn(2, 4, 32, 32), torch.tensor([10, 500]), torch.randn(2, 77, 16)
    attn = unet.down_blocks[0].attentions[0].transformer_blocks[0].attn1
    hidden = torch.randn(2, 1024, 16)
    with torch.no_grad():
        ref = attn(hidden)
        ref_unet = unet(x, t, text).sample
        with grounding.Grounding(unet, fp32_self=True):
            assert isinstance(attn.processor, grounding.Fp32AttnProcessor)
            torch.testing.assert_close(unet(x, t, text).sample, ref_unet, atol=1e-5, rtol=1e-5)
            with torch.autocast("cpu", dtype=torch.bfloat16):
                out = attn(hidden.bfloat16())
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, ref, atol=2e-2, rtol=2e-2)  # only the bf16 input rounding differs


def test_caption_word_positions_point_at_the_objects_words():
    tok = build_tokenizer()
    for seed in range(20):
        scene = make_scene(seed)
        text, where = caption_words(scene.objects, np.random.default_rng(seed))
        tokens = tok.convert_ids_to_tokens(tok(text).input_ids)
        for obj, pos in zip(scene.objects, where):
            words = [tokens[p + 1].removesuffix("</w>") for p in pos]
            assert words[-1] == obj.shape and (len(words) == 1 or words[0] == obj.colour)


def test_grounding_loss_is_low_inside_and_high_outside():
    masks = torch.zeros(1, 1, 8, 8)
    masks[0, 0, :4, :4] = 1  # the object: top-left quarter
    targets = grounding.token_masks(masks, [[[2]]], 5)  # (1, 5, 8, 8), token 2 -> object 0
    inside = torch.full((1, 64, 5), 1e-3)
    inside[0, torch.arange(64).view(8, 8)[:4, :4].flatten(), 2] = 1.0  # covers the object evenly
    outside = torch.full((1, 64, 5), 1e-3)
    outside[0, torch.arange(64).view(8, 8)[4:, 4:].flatten(), 2] = 1.0
    w = torch.ones(1)
    peaky = torch.full((1, 64, 5), 1e-3)
    peaky[0, 0, 2] = 1.0  # inside, but on one pixel only
    low, mid, high = (grounding.grounding_loss([a], targets, w) for a in (inside, peaky, outside))
    assert low < 0.05 < 1.0 < mid < high
    assert grounding.grounding_loss([outside], targets, torch.zeros(1)) == 0


def test_grounding_loss_equals_the_dense_formula():
    """The loss reads only the supervised (sample, token) pairs; it equals the KL written over all
    B x T pairs with zero weights elsewhere, values and gradients (layers on two grids)."""
    torch.manual_seed(0)
    b, n_tok = 4, 77
    store = [torch.rand(b, n, n_tok).softmax(-1).requires_grad_() for n in (1024, 256, 1024)]
    targets = torch.zeros(b, n_tok, 32, 32)
    for i in range(b):
        for tok in torch.randint(1, 20, (3,)).tolist():
            targets[i, tok, torch.randint(0, 20, ()).item():, 5:15] = torch.rand(()).item() + 0.1
    weight = torch.tensor([1.0, 0.0, 1.0, 1.0])

    def dense(store):
        w = (targets.flatten(2).amax(2) > 0).float() * weight[:, None]
        out = []
        for probs in store:
            side = int(probs.shape[1] ** 0.5)
            tgt = torch.nn.functional.adaptive_avg_pool2d(targets, side).flatten(2)
            tgt = tgt / tgt.sum(2, keepdim=True).clamp_min(1e-8)
            a = probs.transpose(1, 2)
            a = a / a.sum(2, keepdim=True).clamp_min(1e-8)
            kl = (tgt * (tgt.clamp_min(1e-8).log() - a.clamp_min(1e-8).log())).sum(2)
            out.append((kl * w).sum() / w.sum())
        return torch.stack(out).mean()

    ref, got = dense(store), grounding.grounding_loss(store, targets, weight)
    torch.testing.assert_close(got, ref)
    for g, h in zip(torch.autograd.grad(got, store), torch.autograd.grad(ref, store)):
        torch.testing.assert_close(g, h, atol=1e-7, rtol=1e-4)


def test_partial_captions_name_a_subset():
    scene = make_scene(0, specs=[("circle", "red", "plain"), ("square", "blue", "plain"), ("ring", "green", "plain")])
    sizes = set()
    for seed in range(30):
        text, where = caption_words(scene.objects, np.random.default_rng(seed), p_partial=1.0)
        named = [w for w in where if w]
        sizes.add(len(named))
        words = text.replace(",", "").split()
        for obj, pos in zip(scene.objects, where):
            assert (obj.shape in words) == bool(pos)
    assert sizes == {1, 2}


def test_features_are_recorded_for_every_class_head():
    torch.manual_seed(0)
    unet = build_unet(TINY)
    heads = grounding.class_heads(unet, 5)
    features: list = []
    with grounding.Grounding(unet, features), torch.no_grad():
        unet(torch.randn(2, 4, 32, 32), torch.tensor([10, 500]), torch.randn(2, 77, 16))
    assert len(features) == len(heads) == 7
    for layer, feat in features:
        assert feat.shape[0] == 2 and heads[layer.replace(".", "_")](feat).shape[-1] == 6


def test_class_targets_and_loss_reward_the_right_class():
    masks = torch.zeros(1, 4, 8, 8)
    masks[0, 0, :4, :4] = 1.0  # slot 0: shape 2, top-left
    masks[0, 1, 4:, 4:] = 0.5  # slot 1: shape 0, half coverage bottom-right
    targets = grounding.class_targets(masks, torch.tensor([[2, 0, -1, -1]]), 5)  # (1, 6, 8, 8)
    assert torch.allclose(targets.sum(dim=1), torch.ones(1, 8, 8))
    assert targets[0, 2, 0, 0] == 1 and targets[0, 0, 7, 7] == 0.5 and targets[0, 5, 7, 7] == 0.5
    assert targets[0, 5, 0, 7] == 1  # background elsewhere
    labels = targets[0].flatten(1).T  # (64, 6)
    head = torch.nn.Linear(6, 6)
    with torch.no_grad():  # a head that reads a one-hot feature of the true class, or a shuffled one
        head.weight.copy_(10 * torch.eye(6))
        head.bias.zero_()
    heads = torch.nn.ModuleDict({"layer": head})
    w = torch.ones(1)
    right = grounding.class_loss([("layer", labels[None])], heads, targets, w)
    wrong = grounding.class_loss([("layer", labels[None].roll(1, dims=-1))], heads, targets, w)
    assert right < 0.8 < 5 < wrong
    assert grounding.class_loss([("layer", labels[None])], heads, targets, torch.zeros(1)) == 0

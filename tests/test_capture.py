"""Attention capture on a tiny UNet: only named layers, restored on exit, early stop."""

import pytest
import torch

from personaseg import capture
from personaseg.capture import AttentionCapture
from personaseg.layers import layer_map_for


@pytest.fixture(scope="module")
def unet(tiny_model_dir):
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel.from_pretrained(tiny_model_dir / "unet").eval()


def _inputs(b=2):
    g = torch.Generator().manual_seed(0)
    return torch.randn(b, 4, 8, 8, generator=g), torch.tensor([150] * b), torch.randn(b, 77, 32, generator=g)


def test_records_only_named_layers_and_restores(unet):
    lm = layer_map_for(unet)
    cross, self_ = lm.cross_modules(unet), lm.self_modules(unet)
    before = {k: type(v) for k, v in unet.attn_processors.items()}
    x, t, text = _inputs()
    with AttentionCapture(unet, cross=cross, self_=self_) as cap:
        hooked = capture.hooked(unet)
        assert sorted(hooked) == sorted(f"{n}.processor" for n in cross + self_)
        cap.run(lambda: unet(x, t, encoder_hidden_states=text))
    assert {k: type(v) for k, v in unet.attn_processors.items()} == before
    for name in cross:
        probs = cap.cross(name)
        assert probs.shape[0] == 2 and probs.shape[-1] == 77
        assert torch.allclose(probs.sum(-1), torch.ones_like(probs.sum(-1)), atol=1e-5)
    qk = cap.self_attention(self_[0])
    assert qk.q.shape == qk.k.shape and qk.q.shape[0] == 2


def test_restores_on_error_and_refuses_double_hook(unet):
    lm = layer_map_for(unet)
    cap = AttentionCapture(unet, cross=lm.cross_modules(unet))
    with pytest.raises(ZeroDivisionError):
        with cap:
            with pytest.raises(RuntimeError, match="already hooked"):
                cap.hook()
            1 / 0
    assert not capture.hooked(unet)


def test_stop_after_last_skips_the_rest_and_output_is_unchanged_without_it(unet):
    lm = layer_map_for(unet)
    names = lm.cross_modules(unet)[:1]  # an early layer
    x, t, text = _inputs()
    ran = []
    handle = unet.conv_out.register_forward_hook(lambda *a: ran.append(1))
    try:
        with AttentionCapture(unet, cross=names) as cap:
            assert cap.run(lambda: unet(x, t, encoder_hidden_states=text)) is None
        assert ran == []
        ref = unet(x, t, encoder_hidden_states=text).sample
        all_layers = dict(cross=lm.cross_modules(unet), self_=lm.self_modules(unet))
        with AttentionCapture(unet, **all_layers, stop_after_last=False) as cap:
            out = cap.run(lambda: unet(x, t, encoder_hidden_states=text)).sample
        assert ran == [1, 1]
        # our processor computes the same output as diffusers' default one
        assert torch.allclose(out, ref, atol=1e-5)
    finally:
        handle.remove()

"""Layer maps (SD 1.5's map from its real config, on the meta device)."""

import pytest

from personaseg.errors import ModelError
from personaseg.layers import layer_map_for, list_blocks

SD15_UNET = dict(
    sample_size=64, in_channels=4, out_channels=4, layers_per_block=2, cross_attention_dim=768,
    block_out_channels=(320, 640, 1280, 1280), attention_head_dim=8,
    down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
    up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
)


@pytest.fixture(scope="module")
def sd15_unet():
    from accelerate import init_empty_weights
    from diffusers import UNet2DConditionModel

    with init_empty_weights():
        return UNet2DConditionModel(**SD15_UNET)


def test_sd15_layer_map_is_the_papers(sd15_unet):
    blocks = list_blocks(sd15_unet)
    assert len(blocks) == 16
    lm = layer_map_for(sd15_unet)
    assert [b.index for b in lm.cross] == [4, 5, 6, 7, 8]
    assert [b.name for b in lm.cross] == [
        "down_blocks.2.attentions.0", "down_blocks.2.attentions.1", "mid_block.attentions.0",
        "up_blocks.1.attentions.0", "up_blocks.1.attentions.1"]
    assert lm.self_.name == "up_blocks.2.attentions.1" and lm.self_.index == 11
    assert lm.self_.factor == 2 and {b.factor for b in lm.cross} == {4, 8}
    assert lm.self_modules(sd15_unet) == ["up_blocks.2.attentions.1.transformer_blocks.0.attn1"]


def test_layer_map_override_by_index_and_name(sd15_unet):
    lm = layer_map_for(sd15_unet, cross=["0", "up_blocks.3.attentions.2"], self_="none")
    assert [b.index for b in lm.cross] == [0, 15] and lm.self_ is None
    with pytest.raises(ModelError, match="unknown cross block"):
        layer_map_for(sd15_unet, cross=["up_blocks.9.attentions.0"])


def test_sdxl_is_refused_clearly():
    from accelerate import init_empty_weights
    from diffusers import UNet2DConditionModel

    with init_empty_weights():
        unet = UNet2DConditionModel(
            **{**SD15_UNET, "block_out_channels": (32, 64, 64, 64), "attention_head_dim": 2,
               "addition_embed_type": "text_time", "addition_time_embed_dim": 8,
               "projection_class_embeddings_input_dim": 80})
    with pytest.raises(ModelError, match="SDXL"):
        layer_map_for(unet)

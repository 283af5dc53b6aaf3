"""A single-file Stable Diffusion 1.x / 2.x checkpoint (``.safetensors``, as A1111 / ComfyUI users
have them, in the original CompVis/LDM layout) loaded with no network.

diffusers' ``from_single_file`` reads the weights from the file but the components' configs from
the hub: it infers the model type from the checkpoint's keys and fetches that type's diffusers
repo. Those configs are a few small JSON files, shipped here (``sd_configs/sd1``: SD 1.5's;
``sd_configs/sd2``: SD 2.1's, the one diffusers itself picks for any 2.x file) and passed as
``config=``. The tokenizer: neither transformers nor any other dependency of ours ships CLIP's
vocabulary (open_clip_torch does, but it pulls torchvision, whose build must match torch's), so
the byte-pair merges of OpenAI's CLIP (MIT licence, ``sd_configs/LICENSE-CLIP-BPE``; 1.3 MB) ship
here and ``vocab.json`` / ``merges.txt`` are built from them as CLIP's own tokenizer does.
"""

from __future__ import annotations

import gzip
import json
import tempfile
from pathlib import Path

from .errors import ModelError

CONFIGS = Path(__file__).parent / "sd_configs"
FAMILIES = {"v1": CONFIGS / "sd1", "v2": CONFIGS / "sd2"}  # diffusers' model type -> shipped config folder
BPE_FILE = CONFIGS / "bpe_simple_vocab_16e6.txt.gz"
N_MERGES = 49152 - 256 - 2  # CLIP uses the first 48894 merges: a vocabulary of 49408 tokens
PAD_TOKEN = {"v1": "<|endoftext|>", "v2": "!"}  # SD 2.x's OpenCLIP tokenizer pads with "!" (id 0)
# keys that tell the families apart (diffusers' single_file_utils.CHECKPOINT_KEY_NAMES)
UNET_IN = "model.diffusion_model.input_blocks.0.0.weight"
V2_CROSS = "model.diffusion_model.input_blocks.2.1.transformer_blocks.0.attn2.to_k.weight"


def checkpoint_family(path: Path) -> str:
    """``"v1"`` or ``"v2"`` from the checkpoint's keys (read from the header, no weights); other
    models are one line."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as fh:
            keys = set(fh.keys())
            shape = {k: fh.get_slice(k).get_shape() for k in (UNET_IN, V2_CROSS) if k in keys}
    except Exception as err:  # safetensors raises its own error types for a broken header
        raise ModelError(f"{path} is not a readable .safetensors file ({type(err).__name__})",
                         hint="check the file, or give a diffusers folder or a hub id") from None
    if any(k.startswith("conditioner.") for k in keys):
        raise ModelError(f"{path} is an SDXL checkpoint: not supported yet", hint="use a Stable Diffusion 1.x or 2.x model")
    if UNET_IN not in shape:
        raise ModelError(f"{path} is not a Stable Diffusion checkpoint in the original layout (no {UNET_IN})",
                         hint="give an SD 1.x/2.x .safetensors file, a diffusers folder or a hub id")
    if shape[UNET_IN][1] != 4:
        raise ModelError(f"{path} has a UNet with {shape[UNET_IN][1]} input channels (an inpainting model?)",
                         hint="use a text-to-image Stable Diffusion 1.x or 2.x checkpoint")
    return "v2" if V2_CROSS in shape and shape[V2_CROSS][-1] == 1024 else "v1"


def bytes_to_unicode() -> dict[int, str]:
    """CLIP's (and GPT-2's) reversible map of bytes to printable characters."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs)))


def write_clip_vocab(folder: Path) -> tuple[Path, Path]:
    """``vocab.json`` and ``merges.txt`` of the CLIP tokenizer in ``folder``, built from the shipped
    merges exactly as CLIP's ``SimpleTokenizer`` builds its encoder (the files the hub's SD repos hold)."""
    merges = gzip.open(BPE_FILE).read().decode("utf-8").split("\n")[1:N_MERGES + 1]
    chars = list(bytes_to_unicode().values())
    vocab = chars + [c + "</w>" for c in chars] + ["".join(m.split()) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(vocab)}, ensure_ascii=False))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    return folder / "vocab.json", folder / "merges.txt"


def clip_tokenizer(family: str = "v1"):
    """The CLIP tokenizer of SD 1.x (``"v1"``) or SD 2.x (``"v2"``), from the shipped merges."""
    from transformers import CLIPTokenizer

    with tempfile.TemporaryDirectory(prefix="personaseg-clip-") as tmp:
        vocab, merges = write_clip_vocab(Path(tmp))
        return CLIPTokenizer(str(vocab), str(merges), model_max_length=77, pad_token=PAD_TOKEN[family])


def load_single_file(path: Path, **kwargs):
    """``StableDiffusionPipeline.from_single_file`` with the shipped configs and tokenizer: no network."""
    from diffusers import StableDiffusionPipeline

    family = checkpoint_family(path)
    return StableDiffusionPipeline.from_single_file(
        str(path), config=str(FAMILIES[family]), tokenizer=clip_tokenizer(family), local_files_only=True, **kwargs
    )

"""Cost of `find` against the floor of bare diffusers, on the SD 1.5 architecture (random weights).

floor  = VAE encode + text encode + D conditional UNet forwards (batched), default processors.
find   = Segmenter.set_image + Segmenter.find (capture, early stop, T2M, restore).
official (512 px only, --official) = what the authors' code pays: a guidance batch of 2, and in
         every attention layer the N x N probabilities materialised, head-averaged and, for self
         attention, squared (A @ A).

Time and peak memory of each are measured in this one process, in turn, after a warm-up. Peak
memory is the process RSS sampled every 2 ms (CPU) or torch.cuda.max_memory_allocated (CUDA);
``peak_*_mb`` is the total (weights included, what a device must hold) and ``extra_*_mb`` the
growth over the loaded model.

    python benchmarks/find_cost.py --sizes 512,1024 --draws 2 --json benchmarks/find_cost.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import threading
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from _sd15 import build_sd15  # noqa: E402  (benchmarks/ is the working folder)

import personaseg
from personaseg.config import FindConfig, to_dict
from personaseg.segmenter import Segmenter
from personaseg.provenance import provenance


def _rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _release_freed_memory() -> None:
    """Give freed heap back to the OS so one measurement's leftovers do not inflate the next."""
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:  # not glibc
        pass


class Peak:
    """Peak memory during a block: CUDA allocator stats, or sampled RSS on the CPU."""

    def __init__(self, device: torch.device):
        self.device = device

    def __enter__(self):
        _release_freed_memory()
        self.start = time.perf_counter()
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.base = torch.cuda.memory_allocated() / 2**20
        else:
            self.base = self.peak = _rss_mb()
            self._stop = threading.Event()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, _rss_mb())
            time.sleep(0.002)

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            self.peak = torch.cuda.max_memory_allocated() / 2**20
        else:
            self._stop.set()
            self._thread.join()
            self.peak = max(self.peak, _rss_mb())
        self.seconds = time.perf_counter() - self.start


@torch.inference_mode()
def floor(pipe, image: torch.Tensor, draws: int, timestep: int = 150) -> None:
    """The least any T2M implementation must run: encode, text, D conditional UNet forwards."""
    vae, unet = pipe.vae, pipe.unet
    latent = vae.encode(image).latent_dist.sample() * vae.config.scaling_factor
    ids = pipe.tokenizer("a photo of a mug", padding="max_length", max_length=77, return_tensors="pt").input_ids
    text = pipe.text_encoder(ids.to(unet.device))[0]
    noisy = latent.expand(draws, -1, -1, -1) + torch.randn(draws, *latent.shape[1:], device=latent.device)
    t = torch.full((draws,), timestep, device=latent.device)
    unet(noisy, t, encoder_hidden_states=text.expand(draws, -1, -1))


class OfficialProcessor:
    """The authors' cost: N x N probabilities in every layer, head-averaged; self ones squared."""

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, **kw):
        is_self = encoder_hidden_states is None
        context = hidden_states if is_self else encoder_hidden_states
        b = hidden_states.shape[0]
        q, k, v = (x.view(b, -1, attn.heads, x.shape[-1] // attn.heads).transpose(1, 2)
                   for x in (attn.to_q(hidden_states), attn.to_k(context), attn.to_v(context)))
        probs = torch.softmax(q @ k.transpose(-1, -2) * attn.scale, dim=-1)  # (B, heads, N, N|T)
        mean = probs.mean(dim=1)
        if is_self:
            mean @ mean  # the reference squares A in every block
        out = (probs @ v).transpose(1, 2).reshape(b, -1, attn.heads * v.shape[-1])
        return attn.to_out[1](attn.to_out[0](out)) / attn.rescale_output_factor


@torch.inference_mode()
def official(pipe, image: torch.Tensor, draws: int, timestep: int = 150) -> None:
    """Encode, text for cond+uncond, D guidance-batched UNet passes with N x N maps everywhere."""
    vae, unet = pipe.vae, pipe.unet
    latent = vae.encode(image).latent_dist.sample() * vae.config.scaling_factor
    ids = pipe.tokenizer(["", "a photo of a mug"], padding="max_length", max_length=77, return_tensors="pt").input_ids
    text = pipe.text_encoder(ids.to(unet.device))[0]  # (2, 77, C)
    original = unet.attn_processors
    unet.set_attn_processor(OfficialProcessor())
    try:
        for _ in range(draws):  # the reference loops over draws
            noisy = latent + torch.randn_like(latent)
            unet(torch.cat([noisy] * 2), torch.full((2,), timestep, device=latent.device), encoder_hidden_states=text)
    finally:
        unet.set_attn_processor(original)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="512,1024", help="image sizes in px (square), comma-separated")
    ap.add_argument("--draws", type=int, default=2, help="noise draws D (paper: 10; 2 keeps CPU runs short)")
    ap.add_argument("--official", action="store_true", help="also measure the official-equivalent mode at 512 px")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--dtype", default="float16" if torch.cuda.is_available() else "float32")
    ap.add_argument("--json", type=Path, help="write the results here")
    args = ap.parse_args()
    device = torch.device(args.device)
    dtype = getattr(torch, args.dtype)

    pipe = build_sd15().to(device, dtype)
    records = []
    for size in [int(s) for s in args.sizes.split(",")]:
        config = FindConfig(draws=args.draws, draw_batch=args.draws, long_side=size)
        seg = Segmenter(pipe, config=config)
        rng = np.random.default_rng(size)
        img = Image.fromarray((rng.random((size, size, 3)) * 255).astype(np.uint8))
        x = torch.from_numpy(np.asarray(img)).permute(2, 0, 1)[None].to(device, dtype) / 127.5 - 1
        floor(pipe, x[..., :64, :64], 1)  # warm-up (allocator, kernels)
        with Peak(device) as pf:
            floor(pipe, x, args.draws)
        with Peak(device) as pfind:
            seg.set_image(img)
            seg.find("mug")
        rec = {
            "size": size, "draws": args.draws,
            "floor_s": round(pf.seconds, 3), "find_s": round(pfind.seconds, 3),
            "time_ratio": round(pfind.seconds / pf.seconds, 3),
            "peak_floor_mb": round(pf.peak, 1), "peak_find_mb": round(pfind.peak, 1),
            "mem_ratio": round(pfind.peak / pf.peak, 3),
            "extra_floor_mb": round(pf.peak - pf.base, 1), "extra_find_mb": round(pfind.peak - pfind.base, 1),
            "unet_calls_find": seg.unet_calls,
        }
        if args.official and size == 512:
            with Peak(device) as po:
                official(pipe, x, args.draws)
            rec.update({"official_s": round(po.seconds, 3), "official_time_ratio": round(po.seconds / pf.seconds, 3),
                        "peak_official_mb": round(po.peak, 1), "official_mem_ratio": round(po.peak / pf.peak, 3),
                        "extra_official_mb": round(po.peak - po.base, 1)})
        print(json.dumps(rec), flush=True)
        records.append(rec)
    result = {"benchmark": "find_cost", "model": "SD 1.5 architecture, random weights",
              "device": str(device), "dtype": args.dtype, "threads": torch.get_num_threads(),
              "machine": platform.processor() or platform.machine(), "personaseg": personaseg.__version__,
              "torch": torch.__version__, "config": to_dict(FindConfig(draws=args.draws)), "records": records,
              "provenance": provenance(None) | {"model": "SD 1.5 architecture, random weights", "model_fingerprint": None}}
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

"""What ``learn`` costs on top of a bare training step of the same model (issue 4's benchmark).

    python benchmarks/learn_cost.py --json benchmarks/learn_cost.json
    python benchmarks/learn_cost.py --model toy --resolution 64 --steps 40 --methods ti,lora

In one process, per method (TI, LoRA), on the same model, batch and resolution:

- **bare**: a hand-written loop: cached VAE latents, noise, text encoder, UNet, MSE, backward,
  AdamW step, on exactly the parameters ``learn`` trains (the token rows; for LoRA also the
  rank-r adapters). Nothing else: no accelerate, no data sampling, no progress bar, no checks.
- **learn**: the public ``personaseg.concepts.learn`` (the whole loop: sampling, accelerate,
  progress bar, checkpoint checks). Wall time per step: the concept's ``train_seconds / steps``;
  CPU time per step: the CPU time of ``learn(2n)`` minus that of ``learn(n)``, over n (model
  loading and set-up cancel; ``setup_s`` reports them).

Rounds run bare(n), learn(n), learn(2n), bare(n), ...; a round's ratio divides learn's time per
step by the mean of the bare runs on either side, the median over rounds is reported (every round
is in the JSON). ``overhead_ratio_cpu`` is the robust figure on a shared machine (it does not count
waiting for other processes); ``overhead_ratio`` is the same with wall time.

Target: overhead ratio <= 1.05. Peak memory of
each, from loading the model to the last of n steps: CUDA ``max_memory_allocated``; on CPU the
peak resident set size above the start, sampled every 2 ms (after ``gc`` and ``malloc_trim``), so
it is an estimate.
The default model is a small random SD-shaped pipeline built from configs (no download).
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import os
import platform
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from personaseg.provenance import provenance


def build_random_model(folder: Path, width: int = 128) -> Path:
    """A small random StableDiffusionPipeline (UNet 64/128/128, VAE x4, 2-layer CLIP of ``width``)."""
    from diffusers import AutoencoderKL, DDPMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from personaseg.toyworld.vocab import WORDS, build_tokenizer

    torch.manual_seed(0)
    tok = build_tokenizer(tuple(dict.fromkeys(WORDS + ("mug",))))
    unet = UNet2DConditionModel(
        sample_size=16, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(64, 128, 128),
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=width, attention_head_dim=8, norm_num_groups=32,
    )
    vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(32, 64, 64),
                        down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3,
                        norm_num_groups=32, sample_size=64)
    te = CLIPTextModel(CLIPTextConfig(vocab_size=len(tok), hidden_size=width, intermediate_size=2 * width,
                                      num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=77,
                                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                                      pad_token_id=tok.pad_token_id))
    sched = DDPMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                          num_train_timesteps=1000, clip_sample=False)
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=te, tokenizer=tok, unet=unet, scheduler=sched,
                                   safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.save_pretrained(folder)
    return folder


class PeakMemory:
    """Peak memory of a block: CUDA allocator peak, else sampled RSS above the start."""

    def __init__(self, device: torch.device):
        self.device, self.peak_mb = device, 0.0

    @staticmethod
    def _rss() -> int:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def __enter__(self) -> "PeakMemory":
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.start = torch.cuda.memory_allocated()
            return self
        try:
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        except OSError:
            pass
        self.start, self.top, self.stop = self._rss(), self._rss(), False

        def sample() -> None:
            while not self.stop:
                self.top = max(self.top, self._rss())
                time.sleep(0.002)

        self.thread = threading.Thread(target=sample, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            self.peak_mb = torch.cuda.max_memory_allocated() / 2**20
        else:
            self.stop = True
            self.thread.join()
            self.peak_mb = (self.top - self.start) / 2**20


class BareLoop:
    """The minimal training loop on a freshly loaded pipeline; ``time(n)`` times n steps."""

    def __init__(self, model: str, method: str, resolution: int, batch: int, device: torch.device):
        import torch.nn.functional as F
        from diffusers import DDPMScheduler

        from personaseg.concepts.lora import UnetAdapter
        from personaseg.concepts.textual_inversion import TokenRows
        from personaseg.models import load_pipeline

        loaded = load_pipeline(model, device=device, dtype=torch.float32)
        pipe = loaded[0] if isinstance(loaded, tuple) else loaded
        for m in (pipe.vae, pipe.unet, pipe.text_encoder):
            m.requires_grad_(False)
        tok, te, unet = pipe.tokenizer, pipe.text_encoder, pipe.unet
        tok.add_tokens(["<bench>"])
        base = te.get_input_embeddings()
        rows = TokenRows(base, [tok.convert_tokens_to_ids("<bench>")], base.weight[:1].clone()).to(device)
        te.set_input_embeddings(rows)
        params = [rows.rows]
        if method == "lora":
            UnetAdapter(unet, "bench", 4)
            params += [p for p in unet.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=1e-4, weight_decay=1e-2)
        sched = DDPMScheduler.from_config(pipe.scheduler.config)
        with torch.no_grad():
            x = torch.rand(batch, 3, resolution, resolution, device=device) * 2 - 1
            latents = pipe.vae.encode(x).latent_dist.sample() * pipe.vae.config.scaling_factor
        ids = tok(["a photo of a <bench>"] * batch, padding="max_length", max_length=77,
                  return_tensors="pt").input_ids.to(device)
        te.train()
        unet.train()

        def step() -> None:
            noise = torch.randn_like(latents)
            t = torch.randint(0, 1000, (batch,), device=device)
            pred = unet(sched.add_noise(latents, noise, t), t, te(ids)[0]).sample
            loss = F.mse_loss(pred.float(), noise.float())
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            float(loss)  # the loop reads the loss, as learn does for its progress bar

        self.step, self.device = step, device
        for _ in range(2):  # warm-up
            step()

    def time(self, n: int) -> float:
        start = time.perf_counter()
        for _ in range(n):
            self.step()
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start


def learn_once(model: str, method: str, steps: int, resolution: int, batch: int, device: torch.device,
               photos: Path, store: Path, progress: bool) -> dict:
    """One public ``learn`` call: wall and CPU seconds of the call, and the loop's wall seconds per
    step from the concept's ``train_seconds``."""
    from personaseg.concepts import LearnConfig, learn

    cfg = LearnConfig(method=method, class_word="mug", steps=steps, resolution=resolution, batch_size=batch,
                      grad_accum=1, checkpoint_every=0, lr=1e-4, max_grad_norm=0.0)  # bare does not clip
    wall, cpu = time.perf_counter(), time.process_time()
    concept = learn(photos, "<bench>", cfg, model=model, concepts_dir=store, force=True, progress=progress)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return {"wall": time.perf_counter() - wall, "cpu": time.process_time() - cpu,
            "loop_per_step": concept.meta["train_seconds"] / steps}


def bare_once(model: str, method: str, n: int, args, device: torch.device) -> tuple[float, float]:
    """(wall, CPU) seconds per step of n bare steps on a freshly loaded model (learn loads its own,
    and freshly loaded weights run a little slower at first)."""
    loop = BareLoop(model, method, args.resolution, args.batch_size, device)
    cpu = time.process_time()
    wall = loop.time(n)
    return wall / n, (time.process_time() - cpu) / n


def measure(model: str, method: str, args, device: torch.device, photos: Path, store: Path) -> dict:
    """Rounds of bare(n), learn(n), learn(2n), bare(n), ...

    Time per step of learn: wall = its loop's ``train_seconds / n``; CPU = (CPU of learn(2n) - CPU
    of learn(n)) / n, so loading and set-up cancel. A round's ratio divides learn's time per step by
    the mean of the bare runs just before and after it (slow drift in machine load cancels); the
    median over rounds is reported. CPU time is the robust figure on a shared machine: it does not
    count time spent waiting for other processes.
    """
    n, progress = args.steps, not args.no_progress
    BareLoop(model, method, args.resolution, args.batch_size, device).time(2)  # first-load effects out
    with PeakMemory(device) as bare_mem:  # from loading the model to the last of n steps, like learn
        fresh = BareLoop(model, method, args.resolution, args.batch_size, device)
        fresh.time(n)
    del fresh
    with PeakMemory(device) as learn_mem:
        learn_once(model, method, n, args.resolution, args.batch_size, device, photos, store, progress)
    rows = []
    before = bare_once(model, method, n, args, device)
    for _ in range(args.rounds):
        one = learn_once(model, method, n, args.resolution, args.batch_size, device, photos, store, progress)
        two = learn_once(model, method, 2 * n, args.resolution, args.batch_size, device, photos, store, progress)
        after = bare_once(model, method, n, args, device)
        rows.append({"bare_wall": (before[0] + after[0]) / 2, "bare_cpu": (before[1] + after[1]) / 2,
                     "learn_wall": two["loop_per_step"], "learn_cpu": (two["cpu"] - one["cpu"]) / n,
                     "learn_call_wall": two["wall"], "setup_wall": two["wall"] - two["loop_per_step"] * 2 * n})
        before = after
    med = {k: float(np.median([r[k] for r in rows])) for k in rows[0]}
    return {
        "method": method,
        "bare": {"s_per_step": med["bare_wall"], "steps_per_s": 1 / med["bare_wall"],
                 "cpu_s_per_step": med["bare_cpu"], "peak_mb": bare_mem.peak_mb},
        "learn": {"s_per_step": med["learn_wall"], "steps_per_s": 1 / med["learn_wall"],
                  "cpu_s_per_step": med["learn_cpu"], "peak_mb": learn_mem.peak_mb,
                  "setup_s": med["setup_wall"]},
        "overhead_ratio": float(np.median([r["learn_wall"] / r["bare_wall"] for r in rows])),
        "overhead_ratio_cpu": float(np.median([r["learn_cpu"] / r["bare_cpu"] for r in rows])),
        "mem_ratio": learn_mem.peak_mb / bare_mem.peak_mb if bare_mem.peak_mb > 0 else None,
        "rounds": rows,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=None, help="diffusers folder or 'toy' (default: a small random model)")
    ap.add_argument("--methods", default="ti,lora")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--resolution", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=5, help="interleaved bare/learn rounds (median is reported)")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    ap.add_argument("--no-progress", action="store_true", help="run learn without its progress bar")
    ap.add_argument("--json", type=Path, default=None, help="write the results here")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = args.model or str(build_random_model(tmp / "model"))
        photos = tmp / "photos"
        photos.mkdir()
        rng = np.random.default_rng(0)
        for i in range(4):
            Image.fromarray(rng.integers(0, 255, (96, 80, 3), dtype=np.uint8)).save(photos / f"{i}.png")
        records = []
        for method in args.methods.split(","):
            rec = measure(model, method, args, device, photos, tmp / "store")
            records.append(rec)
            print(json.dumps(rec))
    result = {
        "config": {"model": args.model or "random-small (UNet 64/128/128, text width 128)",
                   "methods": args.methods, "steps": args.steps, "resolution": args.resolution,
                   "batch_size": args.batch_size, "grad_accum": 1, "rounds": args.rounds, "progress_bar": not args.no_progress,
                   "threads": torch.get_num_threads(), "device": str(device), "torch": torch.__version__,
                   "machine": platform.processor() or platform.machine()},
        "records": records,
        "provenance": provenance(args.model) if args.model else
        provenance(None) | {"model": "random-small", "model_fingerprint": None},
    }
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()

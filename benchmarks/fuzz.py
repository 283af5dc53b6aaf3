"""Fuzz the readers of files a user may be sent: every failure must be personaseg's own error.

Targets (each reads one crafted input the way personaseg reads a user's file):

    image       load_image on mutated PNG / JPEG / TIFF (with EXIF) / GIF / BMP / WebP bytes,
                and TIFFs whose EXIF tags hold random values
    concept     Concept.from_folder (concept.json), then what find and export read from it
    embedding   load_embeds on diffusers, A1111 and string_to_param files (bytes, header, tensors)
    checkpoint  load_checkpoint on a real learn checkpoint (bytes, safetensors header, state tree)
    index       read_mug19 on a mutated test/index.jsonl, then loading its samples
    concept_toml read_mug19 on a mutated concepts/<name>/concept.toml
    perseg      read_perseg on random Images/ + Annotations/ trees and class_words.toml
    recipe      read_toml + build_config of every config class on mutated recipes/*.toml

Inputs are drawn by Hypothesis (mutations of valid seeds, structured edits of their JSON / TOML /
safetensors headers). An input "fails" when its reader raises anything but a PersonasegError,
runs over --timeout seconds, or runs out of memory (--memory-gb caps the address space).

    python benchmarks/fuzz.py --count 20000                        # all targets, round robin
    python benchmarks/fuzz.py --count 5000 --targets image,index --seed 3
    nice -n 19 python benchmarks/fuzz.py --count 1000000 --json benchmarks/results/fuzz.json

The default test suite runs a short seeded pass of every target (tests/test_fuzz.py).
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import resource
import shutil
import signal
import struct
import sys
import tempfile
import time
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as hyp_seed
from hypothesis import strategies as st
from PIL import Image, TiffImagePlugin
from safetensors.torch import save_file

from personaseg.errors import PersonasegError

REPO = Path(__file__).resolve().parents[1]
INTERESTING = [0, 1, -1, 0x7F, 0x80, 0xFF, 0x7FFF, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF, 2**63 - 1, -2**31]

# --------------------------------------------------------------------------- mutations


@st.composite
def mutated(draw, seeds: list[bytes], max_ops: int = 6) -> bytes:
    """A seed with 0..max_ops byte-level edits (bit flips, bytes set, inserted, deleted,
    duplicated, interesting integers written, truncation)."""
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(0, max_ops))):
        n = len(data)
        op = draw(st.integers(0, 7))
        pos = draw(st.integers(0, max(n - 1, 0)))
        if op == 0 and n:
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == 1 and n:
            data[pos] = draw(st.integers(0, 255))
        elif op == 2:
            data[pos:pos] = draw(st.binary(min_size=1, max_size=16))
        elif op == 3 and n:
            del data[pos:pos + draw(st.integers(1, 64))]
        elif op == 4 and n:
            chunk = data[pos:pos + draw(st.integers(1, 64))]
            at = draw(st.integers(0, n))
            data[at:at] = chunk
        elif op == 5 and n:
            value = draw(st.sampled_from(INTERESTING))
            size, order = draw(st.sampled_from([1, 2, 4, 8])), draw(st.sampled_from("<>"))
            fmt = {1: "b", 2: "h", 4: "i", 8: "q"}[size]
            try:
                packed = struct.pack(order + fmt, value)
            except struct.error:
                packed = struct.pack(order + fmt.upper(), value & ((1 << (8 * size)) - 1))
            data[pos:pos + size] = packed
        elif op == 6:
            del data[pos:]
        elif op == 7 and n:
            data[pos] = draw(st.sampled_from(b"\x00\xff\"'{}[],:\n\\=#<>./"))
    return bytes(data)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12) | st.sampled_from(["../../x", "/etc/passwd", "a" * 300, "{}", "<x>", "", "ti", "lora"]),
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=6), c, max_size=3),
    max_leaves=6,
)


@st.composite
def json_edit(draw, obj):
    """``obj`` with 1..3 structural edits: a node replaced, a key removed or added, a list emptied."""
    obj = json.loads(json.dumps(obj))
    for _ in range(draw(st.integers(1, 3))):
        paths = list(_json_paths(obj))
        path = draw(st.sampled_from(paths))
        op = draw(st.integers(0, 2))
        if not path or op == 0:
            new = draw(JSON_VALUES)
            if not path:
                obj = new
                continue
            parent = _at(obj, path[:-1])
            parent[path[-1]] = new
        elif op == 1:
            parent = _at(obj, path[:-1])
            if isinstance(parent, dict):
                parent.pop(path[-1], None)
            else:
                parent.pop(path[-1])
        else:
            node = _at(obj, path)
            if isinstance(node, dict):
                node[draw(st.text(max_size=6))] = draw(JSON_VALUES)
            elif isinstance(node, list):
                node.append(draw(JSON_VALUES))
    return obj


def _json_paths(obj, prefix=()):
    yield prefix
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _json_paths(v, prefix + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _json_paths(v, prefix + (i,))


def _at(obj, path):
    for p in path:
        obj = obj[p]
    return obj


def safetensors_parts(data: bytes) -> tuple[dict, bytes]:
    n = struct.unpack("<Q", data[:8])[0]
    return json.loads(data[8:8 + n]), data[8 + n:]


def safetensors_join(header, body: bytes) -> bytes:
    raw = json.dumps(header, allow_nan=True).encode()
    return struct.pack("<Q", len(raw)) + raw + body


# --------------------------------------------------------------------------- seeds


def _image_bytes(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def image_seeds() -> dict[str, list[bytes]]:
    rng = np.random.default_rng(0)
    rgb = Image.fromarray(rng.integers(0, 255, (6, 8, 3), dtype=np.uint8))
    exif = Image.Exif()
    exif[274] = 6  # orientation: rotate
    exif[282] = TiffImagePlugin.IFDRational(72, 1)
    seeds = {
        ".png": [_image_bytes(rgb, "PNG"), _image_bytes(rgb.convert("RGBA"), "PNG"),
                 _image_bytes(rgb.convert("P"), "PNG"), _image_bytes(Image.fromarray(
                     (rng.integers(0, 65535, (6, 8))).astype(np.uint16)), "PNG")],
        ".jpg": [_image_bytes(rgb, "JPEG", exif=exif), _image_bytes(rgb.convert("CMYK"), "JPEG")],
        ".tif": [_image_bytes(rgb, "TIFF", exif=exif), _image_bytes(rgb.convert("L"), "TIFF")],
        ".gif": [_image_bytes(rgb.convert("P"), "GIF")],
        ".bmp": [_image_bytes(rgb, "BMP")],
        ".webp": [_image_bytes(rgb, "WEBP")],
    }
    return seeds


EXIF_VALUES = st.one_of(
    st.integers(-2**31, 2**32), st.text(max_size=8), st.binary(max_size=8),
    st.builds(TiffImagePlugin.IFDRational, st.integers(-5, 2**31), st.integers(-1, 5)),
    st.tuples(st.integers(0, 9), st.integers(0, 9)),
)
TIFF_TAGS = [256, 257, 258, 259, 262, 273, 277, 278, 279, 284, 317, 320, 338, 339, 700, 33723, 34377]
EXIF_TAGS = [274, 282, 283, 296, 305, 306, 0x8769, 0x8825, 0xA002, 0xA003, 0x0112, 0x9003, 0x927C, 513, 514]


def concept_seed() -> dict:
    return {
        "format": 1, "name": "mymug", "token": "<mymug>", "tokens": ["<mymug>", "<mymug>_1"], "method": "ti",
        "base_model": "toy", "base_model_path": "/x/toy", "width": 32, "cross_attention_dim": 32,
        "num_vectors": 2, "class_word": "mug", "prompt_template": "a photo of a {} mug",
        "files": {"embeddings": "learned_embeds.safetensors"}, "config": {"steps": 10},
        "photos": [{"file": "a.png", "sha256": "00"}], "steps": 10, "final_loss": 0.1,
        "presence_ref": 0.5, "presence_ref_at": {"timestep": 150}, "created": "2026-01-01T00:00:00+00:00",
    }


def embedding_seeds() -> list[bytes]:
    torch.manual_seed(0)
    out = []
    for sd in ({"<mymug>": torch.randn(2, 32)}, {"emb_params": torch.randn(2, 32)},
               {"string_to_param.*": torch.randn(1, 32)}, {"<x>": torch.randn(32)}):
        path = Path(tempfile.mkdtemp()) / "e.safetensors"
        save_file(sd, str(path))
        out.append(path.read_bytes())
        shutil.rmtree(path.parent)
    return out


def checkpoint_seed() -> bytes:
    """A checkpoint as ``learn`` writes it: one TI row, AdamW and scheduler state, RNG states."""
    from diffusers.optimization import get_scheduler

    from personaseg.concepts.checkpoint import rng_state, save_checkpoint

    p = torch.nn.Parameter(torch.randn(1, 32))
    opt = torch.optim.AdamW([p], lr=1e-3)
    p.grad = torch.randn(1, 32)
    opt.step()
    sched = get_scheduler("constant", opt)
    state = {"trainable": {"rows": p.detach()}, "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
             "scaler": None, "rng": rng_state(), "hardest": None, "token": "<mymug>", "force": False,
             "photos": ["ab" * 32], "config": {"steps": 10, "method": "ti"}, "base_model": "toy",
             "train_seconds": 1.5, "step": 5, "losses": [0.5, 0.25]}
    path = Path(tempfile.mkdtemp()) / "checkpoint.safetensors"
    save_checkpoint(path, state)
    data = path.read_bytes()
    shutil.rmtree(path.parent)
    return data


def recipe_seeds() -> list[bytes]:
    return [p.read_bytes() for p in sorted((REPO / "recipes").glob("*.toml"))] or [b'steps = 10\nlr = 0.001\n']


INDEX_SEED = (b'{"image": "images/a.png", "concept": "mug", "mask": "masks/a/mug.png", "subset": ["alone"]}\n'
              b'{"image": "images/b.png", "concept": "mug", "mask": "masks/b/mug.png", "subset": "absent"}\n')
TOML_SEED = b'class_word = "mug"\nnotes = "a red mug"\n'


# --------------------------------------------------------------------------- targets


@dataclass
class Target:
    name: str
    strategy: st.SearchStrategy
    run: Callable[[object, Path], None]  # (drawn input, a fresh work folder) -> None or our error


def _png(path: Path, size=(8, 6), value=128) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("L" if "mask" in str(path) or "Annotations" in str(path) else "RGB", size, value).save(path)


def make_targets() -> dict[str, Target]:
    from personaseg.bench.config import BenchConfig
    from personaseg.bench.mug19 import read_mug19
    from personaseg.bench.perseg import read_perseg
    from personaseg.concepts.checkpoint import load_checkpoint
    from personaseg.concepts.config import LearnConfig
    from personaseg.concepts.store import ConceptStore
    from personaseg.concepts.textual_inversion import load_embeds, parse_token
    from personaseg.config import FindConfig, build_config, read_toml
    from personaseg.images import load_image
    from personaseg.toyworld.config import ToyTrainConfig

    imgs = image_seeds()
    suffixes = sorted(imgs)

    @st.composite
    def image_input(draw):
        if draw(st.integers(0, 4)) == 0:  # a TIFF or JPEG whose EXIF tags hold random values
            exif = Image.Exif()
            for _ in range(draw(st.integers(1, 4))):
                exif[draw(st.sampled_from(EXIF_TAGS))] = draw(EXIF_VALUES)
            fmt, suffix = draw(st.sampled_from([("TIFF", ".tif"), ("JPEG", ".jpg"), ("PNG", ".png"), ("WEBP", ".webp")]))
            extra = {}
            if fmt == "TIFF" and draw(st.booleans()):  # the TIFF's own tags, of any type (a rational offset...)
                ifd = TiffImagePlugin.ImageFileDirectory_v2()
                for _ in range(draw(st.integers(1, 3))):
                    tag = draw(st.sampled_from(TIFF_TAGS))
                    ifd[tag] = draw(EXIF_VALUES)
                    ifd.tagtype[tag] = draw(st.sampled_from([1, 2, 3, 4, 5, 7, 9, 10, 11, 12]))
                extra["tiffinfo"] = ifd
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    data = _image_bytes(Image.new("RGB", (5, 4), (9, 99, 199)), fmt, exif=exif, **extra)
            except Exception:  # PIL cannot write that tag: mutate a seed instead
                data = imgs[".tif"][0]
            return suffix, draw(mutated([data], max_ops=2))
        suffix = draw(st.sampled_from(suffixes))
        return draw(st.sampled_from([suffix, ".png"])), draw(mutated(imgs[suffix]))

    def run_image(inp, work: Path) -> None:
        suffix, data = inp
        path = work / f"x{suffix}"
        path.write_bytes(data)
        img = load_image(path)
        assert img.mode == "RGB" and img.width >= 1 and img.height >= 1

    seed_meta = concept_seed()
    seed_meta_bytes = json.dumps(seed_meta, indent=2).encode()
    emb = embedding_seeds()

    @st.composite
    def concept_input(draw):
        kind = draw(st.integers(0, 2))
        if kind == 0:
            meta = draw(mutated([seed_meta_bytes, b"[]", b"{}", b"null"]))
        else:
            meta = json.dumps(draw(json_edit(seed_meta)), allow_nan=True).encode()
        return meta, draw(st.sampled_from(emb[:1] + [_emb_bytes(torch.randn(2, 32))]))

    def run_concept(inp, work: Path) -> None:
        meta, embeds = inp
        root = work / "store"
        folder = root / "mymug"
        folder.mkdir(parents=True)
        (folder / "concept.json").write_bytes(meta)
        (folder / "learned_embeds.safetensors").write_bytes(embeds)
        store = ConceptStore(root)
        concepts = store.list()  # a broken concept is skipped (warning), not raised
        assert len(concepts) <= 1
        c = store.get("mymug")
        c.prompt(), c.prompt(expand=True), c.sub_tokens
        rows = c.embeddings()
        assert rows.shape == (c.num_vectors, c.width)
        store.export("mymug", work / "out.safetensors")

    @st.composite
    def embedding_input(draw):
        kind = draw(st.integers(0, 2))
        if kind == 0:
            return draw(mutated(emb))
        if kind == 1:
            header, body = safetensors_parts(draw(st.sampled_from(emb)))
            return safetensors_join(draw(json_edit(header)), body)
        shape = draw(st.lists(st.integers(0, 4), max_size=4))
        dtype = draw(st.sampled_from([torch.float32, torch.float16, torch.bfloat16, torch.int64, torch.bool, torch.uint8]))
        t = torch.zeros(shape, dtype=dtype) if dtype == torch.bool else torch.randn(shape).to(dtype)
        if dtype.is_floating_point and t.numel() and draw(st.booleans()):
            t.view(-1)[0] = draw(st.sampled_from([float("nan"), float("inf"), 1e38]))
        keys = draw(st.lists(st.sampled_from(["<a>", "emb_params", "string_to_param.*", "x", "../y", ""]),
                             min_size=0, max_size=3, unique=True))
        return _emb_bytes_dict({k: t.clone() for k in keys})

    def run_embedding(data, work: Path) -> None:
        path = work / "e.safetensors"
        path.write_bytes(data)
        token, rows = load_embeds(path)
        assert rows.ndim == 2 and rows.shape[0] >= 1
        if token is not None:
            try:
                parse_token(token, quiet=True)
            except PersonasegError:
                return
        ConceptStore(work / "store").import_(path)

    ck = checkpoint_seed()

    @st.composite
    def checkpoint_input(draw):
        kind = draw(st.integers(0, 2))
        if kind == 0:
            return draw(mutated([ck]))
        header, body = safetensors_parts(ck)
        if kind == 1:
            return safetensors_join(draw(json_edit(header)), body)
        meta = header["__metadata__"]
        tree = json.loads(meta["personaseg_checkpoint"])
        meta["personaseg_checkpoint"] = json.dumps(draw(json_edit(tree)), allow_nan=True)
        return safetensors_join(header, body)

    def run_checkpoint(data, work: Path) -> None:
        path = work / "checkpoint.safetensors"
        path.write_bytes(data)
        state = load_checkpoint(path)
        assert isinstance(state, dict)

    @st.composite
    def index_input(draw):
        if draw(st.booleans()):
            return draw(mutated([INDEX_SEED]))
        rows = [json.loads(line) for line in INDEX_SEED.splitlines()]
        return b"\n".join(json.dumps(draw(json_edit(r)), allow_nan=True).encode() for r in rows)

    trees: dict[Path, Path] = {}

    def mug19_tree(work: Path, index: bytes, toml: bytes) -> Path:
        # the images are only read: one tree per run, its two text files rewritten per input
        root = trees.get(work.parent)
        if root is None:
            root = trees[work.parent] = work.parent / "mug19"
            _png(root / "concepts" / "mug" / "photos" / "p.png")
            for stem in ("a", "b"):
                _png(root / "test" / "images" / f"{stem}.png")
                _png(root / "test" / "masks" / stem / "mug.png", value=255 if stem == "a" else 0)
        (root / "concepts" / "mug" / "concept.toml").write_bytes(toml)
        (root / "test" / "index.jsonl").write_bytes(index)
        return root

    def run_mug19(index: bytes, toml: bytes, work: Path) -> None:
        data = read_mug19(mug19_tree(work, index, toml))
        for s in data.samples:
            image, mask = s.load()
            assert mask.shape == (image.height, image.width)

    @st.composite
    def perseg_input(draw):
        objects = draw(st.lists(st.sampled_from(["dog2", "bear_plushie", "can", "x" * 200, "..", "a b", "_1", "9"]),
                                min_size=0, max_size=3, unique=True))
        tree = {}
        for obj in objects:
            files = draw(st.lists(st.sampled_from(["00.jpg", "01.jpg", "02.png", "03.JPG", "x.txt", "04.tif"]),
                                  max_size=4, unique=True))
            tree[obj] = [(f, draw(st.sampled_from(["ok", "bad", "none", "small"]))) for f in files]
        overrides = draw(st.one_of(st.none(), mutated([b'dog2 = "dog"\ncan = "tin can"\n'])))
        return tree, overrides, draw(st.integers(-1, 3))

    def run_perseg(inp, work: Path) -> None:
        tree, overrides, shots = inp
        root = work / "perseg"
        (root / "Images").mkdir(parents=True)
        (root / "Annotations").mkdir(parents=True)
        for obj, files in tree.items():
            for f, mask in files:
                img = root / "Images" / obj / f
                img.parent.mkdir(parents=True, exist_ok=True)
                Image.new("RGB", (8, 6), (1, 2, 3)).save(img, "PNG")
                m = root / "Annotations" / obj / (Path(f).stem + ".png")
                m.parent.mkdir(parents=True, exist_ok=True)
                if mask == "ok":
                    _png(m, value=255)
                elif mask == "bad":
                    m.write_bytes(b"\x89PNG garbage")
                elif mask == "small":
                    _png(m, size=(3, 3))
        if overrides is not None:
            (root / "class_words.toml").write_bytes(overrides)
        data = read_perseg(root, shots=shots)
        for s in data.samples:
            s.load()

    recipes = recipe_seeds()
    classes = [FindConfig, LearnConfig, BenchConfig, ToyTrainConfig]

    @st.composite
    def recipe_input(draw):
        if draw(st.booleans()):
            return draw(mutated(recipes))
        cls = draw(st.sampled_from(classes))
        names = [f for f in cls.__dataclass_fields__]
        values = draw(st.dictionaries(st.sampled_from(names), JSON_VALUES, min_size=1, max_size=4))
        return _toml(values)

    def run_recipe(data: bytes, work: Path) -> None:
        path = work / "r.toml"
        path.write_bytes(data)
        values = read_toml(path)
        for cls in classes:
            try:
                build_config(cls, values, source=str(path))
            except PersonasegError:
                pass

    return {
        "image": Target("image", image_input(), run_image),
        "concept": Target("concept", concept_input(), run_concept),
        "embedding": Target("embedding", embedding_input(), run_embedding),
        "checkpoint": Target("checkpoint", checkpoint_input(), run_checkpoint),
        "index": Target("index", index_input(), lambda d, w: run_mug19(d, TOML_SEED, w)),
        "concept_toml": Target("concept_toml", mutated([TOML_SEED, b'class_word = ["mug"]\n']),
                               lambda d, w: run_mug19(INDEX_SEED, d, w)),
        "perseg": Target("perseg", perseg_input(), run_perseg),
        "recipe": Target("recipe", recipe_input(), run_recipe),
    }


def _emb_bytes(t: torch.Tensor) -> bytes:
    return _emb_bytes_dict({"<mymug>": t})


def _emb_bytes_dict(sd: dict) -> bytes:
    from safetensors.torch import save

    return save({k: v.contiguous() for k, v in sd.items()})


def _toml(values: dict) -> bytes:
    """A rough TOML writer for fuzzed values (what it cannot write becomes a string)."""
    def lit(v):
        if v is None:
            return '"none"'
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return {float("inf"): "inf", float("-inf"): "-inf"}.get(v, "nan" if v != v else repr(v))
        if isinstance(v, str):
            return json.dumps(v)
        if isinstance(v, list):
            return "[" + ", ".join(lit(x) for x in v) + "]"
        if isinstance(v, dict):
            return "{" + ", ".join(f"{json.dumps(k)} = {lit(x)}" for k, x in v.items()) + "}"
        return json.dumps(str(v))
    return "\n".join(f"{k} = {lit(v)}" for k, v in values.items()).encode()


# --------------------------------------------------------------------------- running


class Hang(Exception):
    pass


def _alarm(signum, frame):
    raise Hang


@dataclass
class Report:
    counts: dict[str, int] = field(default_factory=dict)  # inputs run per target
    ours: dict[str, int] = field(default_factory=dict)  # inputs that ended in a PersonasegError
    findings: dict[str, dict] = field(default_factory=dict)  # key -> {target, error, where, count, example}
    slowest: dict[str, float] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def _where(tb) -> str:
    frames = traceback.extract_tb(tb)
    ours = [f for f in frames if "personaseg" in f.filename and "fuzz.py" not in f.filename]
    f = (ours or frames)[-1]
    return f"{Path(f.filename).name}:{f.lineno} ({f.name})"


def run_target(target: Target, count: int, seed: int, report: Report, timeout: float, work_root: Path,
               raise_on_failure: bool = False) -> None:
    """Run ``count`` inputs of ``target`` drawn with Hypothesis seed ``seed``."""

    def body(inp) -> None:
        work = work_root / f"w{report.total}"
        work.mkdir()
        report.counts[target.name] = report.counts.get(target.name, 0) + 1
        start = time.perf_counter()
        signal.setitimer(signal.ITIMER_REAL, timeout)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # skipped photos, broken concepts: warned, not failed
                target.run(inp, work)
        except PersonasegError:
            report.ours[target.name] = report.ours.get(target.name, 0) + 1
        except (Exception, Hang) as err:  # a finding: anything but our own error
            if isinstance(err, AssertionError) and "fuzz.py" not in _where(err.__traceback__):
                pass  # an assert inside personaseg is a finding too
            key = f"{target.name}: {type(err).__name__} at {_where(err.__traceback__)}"
            hit = report.findings.setdefault(key, {"target": target.name, "error": type(err).__name__,
                                                   "message": str(err)[:200], "where": _where(err.__traceback__),
                                                   "count": 0, "example": _example(inp)})
            hit["count"] += 1
            if raise_on_failure:
                raise AssertionError(f"{key}: {str(err)[:300]}") from err
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            took = time.perf_counter() - start
            report.slowest[target.name] = max(report.slowest.get(target.name, 0.0), took)
            shutil.rmtree(work, ignore_errors=True)

    test = settings(max_examples=count, database=None, deadline=None, phases=[Phase.generate],
                    suppress_health_check=list(HealthCheck), report_multiple_bugs=False)(given(target.strategy)(body))
    hyp_seed(seed)(test)()


def _example(inp) -> str:
    raw = json.dumps(inp, default=lambda b: base64.b64encode(b).decode() if isinstance(b, bytes) else str(b))
    return raw[:2000]


def run(targets: dict[str, Target], count: int, seed: int = 0, chunk: int = 500, timeout: float = 10.0,
        progress: Callable[[Report], None] | None = None, raise_on_failure: bool = False,
        deadline: float | None = None) -> Report:
    """``count`` inputs in total, round robin over ``targets`` in chunks (a fresh Hypothesis run,
    and seed, per chunk: its memory stays flat over a million inputs)."""
    report = Report()
    old = signal.signal(signal.SIGALRM, _alarm)
    work_root = Path(tempfile.mkdtemp(prefix="personaseg-fuzz-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None))
    try:
        i = 0
        names = list(targets)
        while report.total < count and (deadline is None or time.time() < deadline):
            name = names[i % len(names)]
            n = min(chunk, count - report.total)
            run_target(targets[name], n, seed * 100003 + i, report, timeout, work_root, raise_on_failure)
            i += 1
            if progress:
                progress(report)
    finally:
        signal.signal(signal.SIGALRM, old)
        shutil.rmtree(work_root, ignore_errors=True)
    return report


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--count", type=int, default=10000, help="inputs in total (all targets together)")
    ap.add_argument("--targets", default="", help="comma-separated subset (default: all)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--chunk", type=int, default=500, help="inputs per Hypothesis run")
    ap.add_argument("--timeout", type=float, default=10.0, help="seconds one input may take (else: a hang)")
    ap.add_argument("--memory-gb", type=float, default=8.0, help="address-space cap (an input over it: MemoryError)")
    ap.add_argument("--until", type=float, default=None, help="stop at this UNIX time, whatever the count")
    ap.add_argument("--json", type=Path, default=None, help="write the report here (also while running)")
    args = ap.parse_args()
    if args.memory_gb:
        cap = int(args.memory_gb * 2**30)
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    torch.set_num_threads(1)
    targets = make_targets()
    if args.targets:
        targets = {k: targets[k] for k in args.targets.split(",")}
    t0 = time.time()
    last = [0.0]

    def save(report: Report, final: bool = False) -> None:
        if not args.json or (not final and time.time() - last[0] < 30):
            return
        last[0] = time.time()
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        out = {"command": " ".join(sys.argv), "seed": args.seed, "count_asked": args.count, "inputs": report.total,
               "seconds": round(time.time() - t0, 1), "finished": final, "max_rss_mb": round(rss, 1),
               "per_target": report.counts, "our_errors": report.ours,
               "slowest_s": {k: round(v, 3) for k, v in report.slowest.items()},
               "findings": sorted(report.findings.values(), key=lambda f: -f["count"])}
        tmp = args.json.with_suffix(".tmp")
        args.json.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(out, indent=1) + "\n")
        os.replace(tmp, args.json)

    report = run(targets, args.count, args.seed, args.chunk, args.timeout, progress=save, deadline=args.until)
    save(report, final=True)
    print(f"{report.total} inputs in {time.time() - t0:.0f} s; {len(report.findings)} finding(s)")
    for key, f in sorted(report.findings.items(), key=lambda kv: -kv[1]["count"]):
        print(f"  {f['count']:6d}  {key}: {f['message'][:120]}")
    if report.findings:
        sys.exit(1)


if __name__ == "__main__":
    main()

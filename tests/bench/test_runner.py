"""The harness's bookkeeping with a fake learn and segmenter: figures, cache, resume, bad samples,
sharding over (thread-)processes, report schema."""

import json
import shutil
import threading
from pathlib import Path

import pytest

from personaseg import runtime
from personaseg.bench import BenchWarning, examples
from personaseg.bench.config import BenchConfig
from personaseg.bench.runner import run_personal
from personaseg.errors import InputError
from personaseg.io import read_jsonl

from .fakes import LEARN_CALLS, FakeSegmenter, ThreadState, assert_names_code_and_model, install


@pytest.fixture(scope="module")
def mug19(tmp_path_factory):
    return examples.make_mug19(tmp_path_factory.mktemp("mug19"))


@pytest.fixture
def fakes(monkeypatch):
    install(monkeypatch)


def _cfg(tmp_path, **kw):
    return BenchConfig(**{"out": tmp_path / "run", "concepts_dir": tmp_path / "concepts", "model": "tiny", **kw})


def test_figures_cache_and_files(fakes, mug19, tmp_path):
    rep = run_personal(mug19, _cfg(tmp_path, save_masks=True), progress=False)
    ti, cw = rep["results"]["ti"], rep["results"]["class-word"]
    assert ti["all"]["mIoU"] == pytest.approx(1.0) and ti["all"]["n"] == 4
    assert cw["alone"]["mIoU"] == pytest.approx(1.0)
    assert cw["distractor"]["mIoU"] < 0.8  # the class word also takes the distractor
    # the fake concepts have no presence reference: every ti find is counted and the report says so
    assert rep["absent"]["ti"] == {"fp_rate": 0.0, "n": 2, "n_without_reference": 6}
    assert rep["absent"]["class-word"] == {"fp_rate": 1.0, "n": 2}
    assert "No relative presence for 6 ti sample(s)" in (tmp_path / "run" / "report.md").read_text()
    assert len(LEARN_CALLS) == 2  # one per concept
    run = tmp_path / "run"
    lines = read_jsonl(run / "samples.jsonl")
    assert len(lines) == 12 and {"method", "image", "concept", "subset", "iou"} <= set(lines[0])
    assert (run / "masks" / "ti" / "redmug-alone" / "redmug.png").exists()
    assert (run / "report.md").read_text().count("| ti |") >= 2
    assert (run / "grid.png").exists()
    # a second run with the same photos, settings and model reuses the learned concepts
    run_personal(mug19, _cfg(tmp_path, out=tmp_path / "run2"), progress=False)
    assert len(LEARN_CALLS) == 2
    run_personal(mug19, _cfg(tmp_path, out=tmp_path / "run3", learn={"steps": 7}), progress=False)
    assert len(LEARN_CALLS) == 4  # other settings: learned again


def test_report_schema(fakes, mug19, tmp_path):
    rep = run_personal(mug19, _cfg(tmp_path, baselines=["class-word", "lora"]), progress=False)
    assert list(rep["results"]) == ["ti", "class-word", "lora"]
    assert {"config", "results", "absent", "timing", "version", "model", "wall_s"} <= set(rep)
    assert set(rep["config"]) == {"bench", "learn", "find"} and set(rep["config"]["learn"]) == {"ti", "lora"}
    for method, groups in rep["results"].items():
        assert {"all", "alone", "distractor", "semantic-distractor", "absent"} <= set(groups)
        for k in ["mIoU", "cIoU", "P@0.5", "P@0.6", "P@0.7", "P@0.8", "P@0.9", "bIoU", "pointing", "n"]:
            assert k in groups["all"]
            v = groups["all"][k]
            assert k == "n" or 0.0 <= v <= 1.0
    t = rep["timing"]
    assert t["learn_share"] + t["find_share"] == pytest.approx(1.0) and t["images_per_s"] > 0
    assert json.loads((tmp_path / "run" / "report.json").read_text()) == rep


def test_report_names_its_code_and_model(fakes, mug19, tmp_path):
    rep = run_personal(mug19, _cfg(tmp_path), progress=False)
    assert_names_code_and_model(rep, tmp_path / "run")


def test_report_states_the_learn_settings_the_model_card_gave(fakes, mug19, tmp_path):
    """learn fills unset fields from the model card (the toy card's 300 steps), so the report must
    say so, not the method's SD defaults (it said 3000 steps for a toy bench without a recipe)."""
    import json as _json

    model = tmp_path / "carded"
    model.mkdir()
    (model / "model_index.json").write_text("{}")
    (model / "personaseg.json").write_text(_json.dumps({"learn": {"steps": 7, "lr": 0.002}}))
    rep = run_personal(mug19, _cfg(tmp_path, model=str(model), learn={"lr": 0.003}), progress=False)
    assert rep["config"]["learn"]["ti"]["steps"] == 7  # the card's
    assert rep["config"]["learn"]["ti"]["lr"] == 0.003  # the user's wins over the card

def test_resume_skips_finished_samples(fakes, mug19, tmp_path):
    run_personal(mug19, _cfg(tmp_path, limit=2), progress=False)
    assert len(FakeSegmenter.finds) == 4  # 2 samples x (ti, class-word)
    with pytest.raises(InputError, match="--resume"):
        run_personal(mug19, _cfg(tmp_path), progress=False)
    # a run killed mid-write leaves a truncated line: it is redone
    with open(tmp_path / "run" / "samples.jsonl", "a") as fh:
        fh.write('{"method": "ti", "ima')
    FakeSegmenter.finds = []
    with pytest.warns(UserWarning, match="damaged line"):
        rep = run_personal(mug19, _cfg(tmp_path, resume=True), progress=False)
    assert len(FakeSegmenter.finds) == 8  # only the 4 samples not yet done
    assert rep["results"]["ti"]["all"]["n"] + rep["absent"]["ti"]["n"] == 6


def test_bad_sample_is_reported_skipped_and_counted(fakes, mug19, tmp_path):
    root = shutil.copytree(mug19, tmp_path / "data")
    (root / "test" / "masks" / "redmug-alone" / "redmug.png").unlink()
    with pytest.warns(BenchWarning, match="skipped: .*redmug.png is missing"):  # one per sample, the CLI prints it
        rep = run_personal(root, _cfg(tmp_path), progress=False)
    assert rep["results"]["ti"]["all"]["n_skipped"] == 1 and rep["results"]["ti"]["alone"]["n_skipped"] == 1
    assert rep["results"]["ti"]["all"]["n"] == 3
    assert rep["skipped"][0]["image"] == "images/redmug-alone.png" and "is missing" in rep["skipped"][0]["error"]
    assert "Skipped samples (1)" in (tmp_path / "run" / "report.md").read_text()
    # fixed and resumed: the bad sample is scored now
    shutil.copy(root / "test" / "masks" / "redmug-distractor" / "redmug.png",
                root / "test" / "masks" / "redmug-alone" / "redmug.png")
    rep = run_personal(root, _cfg(tmp_path, resume=True), progress=False)
    assert rep["results"]["ti"]["all"]["n_skipped"] == 0 and rep["results"]["ti"]["all"]["n"] == 4


def test_strict_stops_on_a_bad_sample(fakes, mug19, tmp_path):
    from personaseg.errors import DatasetError

    root = shutil.copytree(mug19, tmp_path / "data")
    (root / "test" / "masks" / "bluebox-alone" / "bluebox.png").unlink()
    with pytest.raises(DatasetError, match="bluebox.png is missing"):
        run_personal(root, _cfg(tmp_path, strict=True), progress=False)


def test_two_processes_give_the_single_process_report(fakes, mug19, tmp_path, monkeypatch):
    single = run_personal(mug19, _cfg(tmp_path, out=tmp_path / "one"), progress=False)
    state = ThreadState(2)
    monkeypatch.setattr(runtime, "_state", lambda: state)
    out, errors = {}, []

    def proc(rank):
        state.local.rank = rank
        try:
            out[rank] = run_personal(mug19, _cfg(tmp_path, out=tmp_path / "two"), progress=False)
        except BaseException as err:  # surfaced below
            errors.append(err)
            state.barrier.abort()

    threads = [threading.Thread(target=proc, args=(r,)) for r in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    run = tmp_path / "two"
    assert not list(run.glob("*.part*"))  # parts merged and removed
    assert len(read_jsonl(run / "samples.jsonl")) == 12
    assert out[0]["results"] == out[1]["results"] == single["results"]
    assert out[0]["timing"]["processes"] == 2


def test_shard_is_contiguous_and_complete(monkeypatch):
    items = list(range(7))
    assert runtime.shard(items) == items  # one process: everything
    state = ThreadState(3)
    monkeypatch.setattr(runtime, "_state", lambda: state)
    parts = []
    for rank in range(3):
        state.local.rank = rank
        parts.append(runtime.shard(items))
    assert parts == [[0, 1, 2], [3, 4], [5, 6]]


def test_hf_and_perseg_layouts_run(fakes, mug19, tmp_path):
    pytest.importorskip("datasets")
    hf = examples.make_hf(tmp_path / "hf")
    rep_hf = run_personal(hf, _cfg(tmp_path, out=tmp_path / "hf-run"), progress=False)
    rep_m = run_personal(mug19, _cfg(tmp_path, out=tmp_path / "m-run"), progress=False)
    assert rep_hf["results"] == rep_m["results"]  # same content, other layout
    assert len(list((tmp_path / "hf-run" / "photos").rglob("*.png"))) == 4  # in-memory photos staged
    perseg = examples.make_perseg(tmp_path / "perseg")
    rep = run_personal(perseg, _cfg(tmp_path, out=tmp_path / "p-run", layout="perseg"), progress=False)
    assert rep["results"]["ti"]["perseg"]["n"] == 4 and rep["results"]["ti"]["all"]["objIoU"] is not None


def test_photo_masks_add_a_row_learned_from_the_masks(fakes, mug19, tmp_path):
    from .fakes import MASKS_GIVEN

    rep = run_personal(mug19, _cfg(tmp_path, photo_masks=True, baselines=["ti", "class-word"]), progress=False)
    assert list(rep["results"]) == ["ti+masks", "ti", "class-word"]
    assert rep["results"]["ti+masks"]["all"]["mIoU"] == 1.0
    tokens = [t for c in rep["concepts"].values() for t in c["tokens"].values()]
    assert len(set(tokens)) == 4 and sorted(MASKS_GIVEN) == sorted(t for t in tokens if "-ti-masks-" in t)
    for masks in MASKS_GIVEN.values():  # every photo with its own mask, matched by stem
        assert sorted((Path(p).stem, Path(m).parent.name, Path(m).stem) for p, m in masks.items()) == \
            [("00", "masks", "00"), ("01", "masks", "01")]
    # each concept's learn call, cached or not; nothing for the baseline
    assert rep["results"]["ti+masks"]["learn_s"] == rep["results"]["ti"]["learn_s"] == 2 * 1.5
    assert rep["results"]["ti"]["learn_cpu_s"] == 2 * 1.25 and rep["results"]["class-word"]["learn_s"] == 0.0
    again = run_personal(mug19, _cfg(tmp_path, out=tmp_path / "again", photo_masks=True, baselines=["ti"]),
                         progress=False)
    assert again["results"]["ti"]["learn_s"] == 3.0 and all(r["cached"] for r in read_jsonl(tmp_path / "again" / "learn.jsonl"))


def test_shots_and_photo_masks_on_perseg_and_mug19(fakes, mug19, tmp_path):
    from .fakes import MASKS_GIVEN

    perseg = examples.make_perseg(tmp_path / "perseg")
    rep = run_personal(perseg, _cfg(tmp_path, out=tmp_path / "p", shots=1, photo_masks=True), progress=False)
    assert list(rep["results"]) == ["ti+masks", "class-word"] and rep["results"]["ti+masks"]["perseg"]["n"] == 4
    for masks in MASKS_GIVEN.values():  # PerSAM's protocol: 00.jpg with Annotations/<obj>/00.png
        ((photo, mask),) = masks.items()
        assert Path(photo).name == "00.jpg" and Path(mask).parts[-3:-1] == ("Annotations", Path(photo).parent.name)
    MASKS_GIVEN.clear()
    rep = run_personal(mug19, _cfg(tmp_path, out=tmp_path / "m", shots=1, photo_masks=True), progress=False)
    assert all(c["photos"] == 1 for c in rep["concepts"].values())
    assert all(len(m) == 1 for m in MASKS_GIVEN.values()) and len(MASKS_GIVEN) == 2


def test_photo_masks_without_masks_is_one_line(fakes, mug19, tmp_path):
    from personaseg.errors import DatasetError

    root = tmp_path / "nomasks"
    shutil.copytree(mug19, root)
    for folder in root.glob("concepts/*/masks"):
        shutil.rmtree(folder)
    with pytest.raises(DatasetError, match="has no photo masks for --photo-masks"):
        run_personal(root, _cfg(tmp_path, photo_masks=True), progress=False)


def test_photo_boxes_and_clicks_come_from_the_photo_masks(fakes, mug19, tmp_path):
    from personaseg.bench.data import mask_array

    from .fakes import MASKS_GIVEN

    rep = run_personal(mug19, _cfg(tmp_path, photo_boxes=True, photo_clicks=True, shots=1), progress=False)
    assert list(rep["results"]) == ["ti+box", "ti+click", "class-word"]
    boxes = {t: v for t, v in MASKS_GIVEN.items() if "-ti-box-" in t}
    clicks = {t: v for t, v in MASKS_GIVEN.items() if "-ti-click-" in t}
    assert len(boxes) == len(clicks) == 2
    for given in boxes.values():
        ((photo, box),) = given.items()
        m = mask_array(Path(photo).parent.parent / "masks" / Path(photo).name, "")
        ys, xs = m.nonzero()
        assert list(box) == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
    for given in clicks.values():
        ((photo, (x, y)),) = given.items()
        assert mask_array(Path(photo).parent.parent / "masks" / Path(photo).name, "")[y, x]


def test_a_bad_sample_is_one_warning_line_in_the_cli(fakes, mug19, tmp_path, run):
    root = shutil.copytree(mug19, tmp_path / "data")
    (root / "test" / "masks" / "redmug-alone" / "redmug.png").unlink()
    code, out, err = run("bench", "personal", root, "--model", "tiny", "--out", tmp_path / "run",
                         "--concepts-dir", tmp_path / "concepts", "--no-grid")
    warned = [line for line in err.splitlines() if "warning" in line.lower()]
    assert code == 0 and len(warned) == 1 and "Traceback" not in err
    assert warned[0].startswith("warning: skipped: ") and warned[0].endswith(
        "redmug.png is missing (add it (an all-black PNG if the concept is absent) or remove the line)")

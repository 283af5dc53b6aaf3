"""Model loading errors, model names, fingerprints."""

import pytest

from personaseg.errors import ModelError
from personaseg.models import load_pipeline


@pytest.mark.parametrize("model, match", [
    ("/nonexistent/folder/model.safetensors", "not found"),
    ("weights.ckpt", "pickle"),
    ("nobody-here/no-such-model-xyz", "could not load"),
    ("not a model", "neither"),
    ("/nonexistent", "folder /nonexistent not found"),
])
def test_bad_models_are_one_line_errors(model, match, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelError, match=match) as err:
        load_pipeline(model, device="cpu")
    assert "\n" not in str(err.value)


def test_folder_without_model_index(tmp_path):
    with pytest.raises(ModelError, match="model_index.json"):
        load_pipeline(str(tmp_path), device="cpu")


def test_model_fingerprint_follows_a_local_models_contents(tmp_path):
    from personaseg.models import model_fingerprint

    folder = tmp_path / "m"
    (folder / "unet").mkdir(parents=True)
    (folder / "unet" / "w.safetensors").write_bytes(b"\x00" * 100)
    (folder / "personaseg.json").write_text('{"find": {"long_side": 64}}')
    first = model_fingerprint(str(folder))
    assert model_fingerprint(str(folder)) == first
    (folder / "personaseg.json").write_text('{"find": {"long_side": 96}}')  # presence references are read at it
    second = model_fingerprint(str(folder))
    (folder / "unet" / "w.safetensors").write_bytes(b"\x01" * 100)  # same size, new weights
    third = model_fingerprint(str(folder))
    assert len({first, second, third}) == 3
    # settings that only draw masks from the attention leave learned concepts valid
    (folder / "personaseg.json").write_text(
        '{"find": {"outline": "with-class", "long_side": 96, "refine": false, "min_relative_presence": 0.5}}')
    assert model_fingerprint(str(folder)) == third
    (folder / "personaseg.json").write_text('{"find": {"long_side": 96, "timestep": 100}}')
    assert model_fingerprint(str(folder)) != third
    assert model_fingerprint("some-org/some-model") == "some-org/some-model"  # hub ids: by name


def test_the_loader_finds_the_toy_model_without_importing_the_toy_world():
    """models.py knows its shipped models by a name -> folder registry (issue 20, item 6): reading the
    toy card does not import personaseg.toyworld, and the toy world reads its folder from that registry
    without importing torch (the CLI's start stays light)."""
    import subprocess
    import sys

    code = ("import sys; from personaseg.models import EMBEDDED, read_card; card = read_card('toy'); "
            "assert card.folder == EMBEDDED['toy'].folder and card.layer_map, card; "
            "assert 'personaseg.toyworld' not in sys.modules, 'models imported the toy world'; "
            "import personaseg.toyworld as tw; assert tw.TOY_MODEL_DIR == EMBEDDED['toy'].folder; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True)

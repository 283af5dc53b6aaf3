"""The bench's learn settings and concept cache keys."""

import json

import pytest

from personaseg.bench.learning import learn_config
from personaseg.errors import ConfigError


def test_learn_config_layers():
    cfg = learn_config("lora", {"steps": 3, "method": "ti", "class_word": "cup"}, "mug", seed=4)
    assert (cfg.method, cfg.steps, cfg.class_word, cfg.seed) == ("lora", 3, "mug", 4)  # dataset wins
    assert learn_config("ti", {"seed": 9}, "mug", seed=None).seed == 9
    with pytest.raises(ConfigError, match="unknown setting 'stepz'"):
        learn_config("ti", {"stepz": 3}, "mug", seed=None)


def test_cache_keys_of_plain_concepts_did_not_move(tmp_path):
    """Guidance fields left unset stay out of the cache key, so a plain concept cached before they
    existed keeps its token (checked by hand on toy seed 1414: the four tokens of
    benchmarks/results/toy-pairs2-ti-seed1414.json come out again); set, they change it."""
    import dataclasses
    import hashlib

    from personaseg.bench.data import ConceptSpec
    from personaseg.bench.learning import NEWER_FIELDS, concept_token, learn_config
    from personaseg.config import to_dict
    from personaseg.models import model_fingerprint

    (tmp_path / "p.png").write_bytes(b"photo")
    spec = ConceptSpec("mug", "mug", [tmp_path / "p.png"], "here")
    cfg = learn_config("ti", {"steps": 300}, "mug", None)
    old = {k: v for k, v in to_dict(cfg.resolved()).items()
           if k not in NEWER_FIELDS and k != "stop_check_every"}  # the key before them
    h = hashlib.sha256(hashlib.sha256(b"photo").digest())
    h.update(json.dumps(old, sort_keys=True, default=str).encode())
    h.update(b"tiny")
    h.update(model_fingerprint("tiny").encode())
    assert concept_token(spec, "ti", cfg, "tiny") == f"<bench-mug-ti-{h.hexdigest()[:10]}>"
    assert concept_token(spec, "ti", dataclasses.replace(cfg, guided_steps=50), "tiny") != concept_token(spec, "ti", cfg, "tiny")
    assert concept_token(spec, "ti", dataclasses.replace(cfg, stop_when_stable=0.01), "tiny") != \
        concept_token(spec, "ti", cfg, "tiny")
    # the guided rule moves a guided learn's key only (the toy card sets it: plain keys must not move)
    guided = dataclasses.replace(cfg, guided_stop_when_stable=0.01)
    assert concept_token(spec, "ti", guided, "tiny") == concept_token(spec, "ti", cfg, "tiny")
    spec.masks = [tmp_path / "p.png"]
    assert concept_token(spec, "ti", guided, "tiny", "+masks") != concept_token(spec, "ti", cfg, "tiny", "+masks")

"""Converters: official containers load strictly, each backbone gives the reference architecture's
features with the same weights (golden outputs), full models load strictly, and a mismatch names the
missing / unexpected keys."""

from __future__ import annotations

import argparse

import _official as O
import pytest
import torch

from equivision.api import load_backbone, load_method
from equivision.checkpoints.convert import (
    CONVERTERS,
    ConversionError,
    KeyMap,
    Rule,
    build_backbone_from,
    build_method_from,
    convert_file,
    convert_state_dict,
    detect_converter,
    load_strict,
    read_checkpoint,
    unwrap_state_dict,
)

X64 = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))


def _close(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.shape == b.shape and torch.allclose(a, b, rtol=1e-4, atol=1e-5)


# ----------------------------------------------------------------------------- key maps


def test_keymap_renames_drops_and_reports_unmatched_keys():
    km = KeyMap((Rule("backbone.", ""), Rule("agg_token", None, "aggregator"), Rule("evaluator.", None)))
    out, dropped, unmatched = km.apply(
        {"backbone.conv1.weight": 1, "agg_token": 2, "agg_token_x": 3, "evaluator.fc.bias": 4, "head.w": 5}
    )
    assert out == {"conv1.weight": 1}
    assert dropped == ["agg_token", "evaluator.fc.bias"]
    assert unmatched == ["agg_token_x", "head.w"]  # an exact-key rule does not match a longer key


def test_unexpected_keys_are_named():
    sd = {f"backbone.{k}": v for k, v in O.sie_resnet18_state().items()}
    sd["projector.fc.W1"] = torch.zeros(1)
    sd["mystery.weight"] = torch.zeros(1)
    with pytest.raises(ConversionError, match=r"unexpected checkpoint keys.*mystery\.weight"):
        convert_state_dict(sd, "equicaps")


def test_missing_keys_and_shape_mismatches_are_named():
    sd = O.sie_resnet18_state()
    del sd["layer2.0.downsample.0.weight"]
    sd["conv1.weight"] = torch.zeros(64, 3, 3, 3)
    conv = convert_state_dict(sd, "sie_backbone")
    with pytest.raises(ConversionError) as e:
        build_backbone_from(conv)
    msg = str(e.value)
    assert "missing keys (1): layer2.0.downsample.0.weight" in msg
    assert "conv1.weight: checkpoint (64, 3, 3, 3) vs model (64, 3, 7, 7)" in msg


def test_load_strict_names_unexpected_keys():
    model = torch.nn.Linear(2, 2)
    with pytest.raises(ConversionError, match=r"unexpected keys \(1\): extra"):
        load_strict(model, {**model.state_dict(), "extra": torch.zeros(1)})


def test_module_prefix_is_stripped_only_when_every_key_has_it():
    sd, meta = unwrap_state_dict(
        {"model": {"module.a": torch.zeros(1), "module.b": torch.zeros(1)}, "epoch": 3}
    )
    assert sorted(sd) == ["a", "b"] and meta == {"epoch": 3}
    sd, _ = unwrap_state_dict({"module.a": torch.zeros(1), "b": torch.zeros(1)})
    assert sorted(sd) == ["b", "module.a"]


def test_files_with_arbitrary_python_objects_are_not_unpickled(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"model": {"w": torch.zeros(1)}, "args": argparse.Namespace(lr=1)}, path)
    with pytest.raises(ConversionError, match="weights_only=True"):
        read_checkpoint(path)


# ----------------------------------------------------------------------------- EquiCaps


def test_equicaps_release_to_sie_resnet18_matches_the_reference_forward(official_files):
    path = official_files["paths"]["equicaps"]
    conv = convert_file(path)
    assert conv.converter == "equicaps" and conv.backbone == "sie_resnet18"
    ref = official_files["equicaps"]
    assert sorted(conv.dropped) == sorted(k for k in ref if k.startswith(("projector.", "evaluator.")))
    backbone = build_backbone_from(conv)
    sd = {k[len("backbone.") :]: v for k, v in ref.items() if k.startswith("backbone.")}
    with torch.no_grad():
        assert _close(backbone(X64), O.sie_reference_forward(sd, X64))


def test_equicaps_full_model_loads_strictly_and_pools_the_same_backbone(official_files):
    pytest.importorskip("equivision.ssl.equicaps")
    path = official_files["paths"]["equicaps"]
    model, record = load_method(path)
    assert type(model).__name__ == "EquiCaps" and model.cfg.pose == "3x3" and model.cfg.num_caps == 32
    ref = official_files["equicaps"]
    assert torch.equal(model.projector.fc.W1, ref["projector.fc.W1"])
    assert record["conversion"]["dropped"] == {"evaluator": 3}
    backbone, _ = load_backbone(path)
    x = torch.randn(1, 3, 256, 256, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        out = model.embed(x)
        assert _close(out["repr"], backbone(x))
        assert torch.allclose(out["emb_inv"].sum(dim=1), torch.ones(1))  # capsule activations: a distribution


def test_equicaps_4x4_pose_size_is_read_from_the_weights():
    pytest.importorskip("equivision.ssl.equicaps")
    sd = O.equicaps_state(pose_size=16, caps=4, map_size=2, seed=1)
    conv = convert_state_dict(sd, "equicaps", part="full")
    assert conv.method == "equicaps"
    assert conv.method_config == {"pose": "4x4", "num_caps": 4, "map_size": 2}
    model = build_method_from(conv, {"frame": "base"})
    assert model.cfg.frame == "base" and model.projector.fc.W1.shape == (16, 64, 16)


# ----------------------------------------------------------------------------- SIE


def test_sie_final_weights_match_the_reference_forward(official_files):
    path = official_files["paths"]["sie_final"]
    backbone, record = load_backbone(path)
    assert record["conversion"]["converter"] == "sie_backbone" and record["method"] == "sie"
    with torch.no_grad():
        assert _close(backbone(X64), O.sie_reference_forward(official_files["sie_backbone"], X64))


def test_sie_model_pth_backbone_and_full_model(official_files):
    path = official_files["paths"]["sie_model"]
    backbone, record = load_backbone(path)
    assert record["conversion"]["dropped"] == {
        "projector_inv": 15,
        "projector_equi": 15,
        "predictor": 1,
        "evaluator": 1,
    }
    sd = {
        k[len("backbone.") :]: v for k, v in official_files["sie_model"].items() if k.startswith("backbone.")
    }
    with torch.no_grad():
        assert _close(backbone(X64), O.sie_reference_forward(sd, X64))
    model, rec = load_method(path)
    assert type(model).__name__ == "SIE" and rec["method_config"]["equi_dims"] == 256
    assert torch.equal(
        model.predictor.hypernet.net[0].weight, official_files["sie_model"]["predictor.hypernet.net.0.weight"]
    )


# ----------------------------------------------------------------------------- seq-JEPA


def test_seqjepa_encoder_to_timm_resnet18_matches_torchvision(official_files):
    path = official_files["paths"]["seqjepa"]
    backbone, record = load_backbone(path)
    assert record["backbone"] == {"name": "resnet18", "low_res_stem": False, "feat_dim": 512}
    dropped = record["conversion"]["dropped"]
    assert set(dropped) == {
        "target_encoder", "action_proj", "agg_token", "transformer_encoder", "predictor",
        "online_linprobe", "online_equiprobe",
    }  # fmt: skip
    reference = official_files["seqjepa_parts"]["encoder"]  # torchvision resnet18, fc = Identity
    with torch.no_grad():
        assert _close(backbone(X64), reference(X64))


def test_seqjepa_full_model_loads_strictly_and_aggregates_like_the_official_encoder(official_files):
    seqjepa = pytest.importorskip("equivision.ssl.seqjepa")
    path = official_files["paths"]["seqjepa"]
    model, record = load_method(path, method_config={"seq_len": 3})
    assert record["method_config"]["action"] == "rot" and record["method_config"]["act_dim"] == 128
    official = official_files["seqjepa"]
    ours, _ = seqjepa.from_official_state_dict(official)  # the method's own map agrees with ours
    assert set(ours) == set(model.state_dict())
    parts = official_files["seqjepa_parts"]
    tokens = torch.randn(2, 3, 640, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        assert _close(model.aggregate_tokens(tokens), O.seqjepa_reference_aggregate(parts, tokens))
        assert _close(model.target_encoder(X64), parts["target_encoder"](X64))


def test_seqjepa_pls_cifar_stem_maps_to_resnet18_with_low_res_stem(tmp_path):
    enc = O.torchvision_encoder(seed=9, low_res_stem=True)
    sd = {f"encoder.{k}": v for k, v in enc.state_dict().items()}
    sd["agg_token"] = torch.zeros(1, 1, 640)
    sd["online_res_probe.0.weight"] = torch.zeros(10, 512)
    sd["online_agg_probe.0.weight"] = torch.zeros(10, 640)
    path = tmp_path / "pls.pth"
    O.save_torch({"model": sd, "epoch": 2000}, path)
    assert detect_converter(sd).name == "seqjepa_pls"
    backbone, record = load_backbone(path)
    assert record["backbone"]["low_res_stem"] is True
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        assert _close(backbone(x), enc(x))


# ----------------------------------------------------------------------------- equivision pretrain


def test_equivision_pretrain_checkpoint_backbone_and_method(tmp_path):
    from equivision.backbones import build_backbone
    from equivision.ssl import build_method

    torch.manual_seed(0)
    method = build_method("vicreg", build_backbone("resnet18", low_res_stem=True), {"mlp": "32-32"}).eval()
    config = {
        "method": {"name": "vicreg", "mlp": "32-32", "sim_coeff": 25.0, "std_coeff": 25.0, "cov_coeff": 1.0},
        "backbone": {"name": "resnet18", "low_res_stem": True, "pretrained": False},
        "data": {"root": "/data/x", "image_size": 32},
    }
    path = tmp_path / "last.pt"
    torch.save(
        {
            "format": "equivision-pretrain/1",
            "model": method.state_dict(),
            "config": config,
            "state": {"epoch": 4},
        },
        path,
    )
    backbone, record = load_backbone(path)
    assert record["method"] == "vicreg" and record["input_size"] == 32 and record["epochs"] == 4
    assert set(record["conversion"]["dropped"]) == {"projector"}
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(backbone(x), method.backbone(x))
    full, _ = load_method(path)
    assert type(full).__name__ == "VICReg"
    with torch.no_grad():
        assert torch.equal(full.embed(x)["emb_inv"], method.embed(x)["emb_inv"])


def test_every_registered_converter_has_a_description_and_a_backbone_map():
    for name in CONVERTERS.names():
        conv = CONVERTERS.get(name)
        assert conv.description and conv.backbone_map.rules and conv.family
        assert all(line for line in conv.backbone_map.describe())

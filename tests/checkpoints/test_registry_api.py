"""The registry records against the code they describe, ``equivision.api.load_backbone`` by name
(download from the local server, ``file=``, offline Hugging Face cache, ``pretrained=False``), torch.hub
from the repo directory, the ``checkpoints`` CLI and the README table generator."""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import json
import sys
import warnings
from pathlib import Path

import _official as O
import pytest
import torch
from test_hf_offline import fill_hf_cache

from equivision.api import LoadError, load_backbone, load_method
from equivision.checkpoints.convert import CONVERTERS
from equivision.checkpoints.download import DownloadError, UnpinnedChecksumWarning
from equivision.checkpoints.registry import CHECKPOINTS, CheckpointRecord, Source, get, records
from equivision.cli import main

REPO = Path(__file__).resolve().parents[2]
X = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))


def _backbone_sd(full: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k[len("backbone.") :]: v for k, v in full.items() if k.startswith("backbone.")}


# ----------------------------------------------------------------------------- records


def test_records_point_at_existing_converters_backbones_and_method_configs():
    import timm

    from equivision.backbones.factory import BACKBONES
    from equivision.ssl.registry import METHODS, make_config

    names = CHECKPOINTS.names()
    assert {"equicaps_3diebench", "equicaps_3diebencht_rotation", "equicaps_3diebencht_object_transl",
            "equicaps_3diebencht_base_transl", "seqjepa_3diebench_rot", "seqjepa_3diebench_rotcolor",
            "seqjepa_stl10_pls"} <= set(names)  # fmt: skip
    for rec in records():
        assert rec.converter is None or rec.converter in CONVERTERS
        assert rec.backbone in BACKBONES or timm.is_model(rec.backbone)
        if rec.method_config is not None:
            importlib.import_module(f"equivision.ssl.{rec.method}")
            make_config(METHODS.get(rec.method), dict(rec.method_config))  # every key is a real field
        json.dumps(rec.to_dict())  # JSON-able
    for name in ("seqjepa_3diebench_rot", "seqjepa_3diebench_rotcolor", "seqjepa_stl10_pls"):
        src = get(name).source
        assert (src.kind, src.repo, src.filename, src.verified) == ("hf", "Hafez/seq-JEPA", None, False)
    urls = [get(n).source.url for n in names if n.startswith("equicaps")]
    assert all(
        u.startswith("https://github.com/AberdeenML/EquiCaps/releases/download/v1.0-ckpts/") for u in urls
    )


def test_record_validation():
    with pytest.raises(ValueError, match="identifier"):
        dataclasses.replace(get("equicaps_3diebench"), name="not-an-identifier")
    with pytest.raises(ValueError, match="64 lowercase hex"):
        dataclasses.replace(get("equicaps_3diebench"), sha256="abc")
    with pytest.raises(ValueError, match="needs a repo"):
        Source("hf")


def test_unknown_and_unloadable_names_give_clear_errors():
    with pytest.raises(LoadError, match="neither a registered checkpoint.*equicaps_3diebench"):
        load_backbone("no_such_checkpoint")
    with pytest.raises(LoadError, match="no converter for these weights yet"):
        load_backbone("i2s_pascal3d_resnet101")
    with pytest.raises(DownloadError, match="--hf-file"):
        load_backbone("seqjepa_3diebench_rot")


# ----------------------------------------------------------------------------- load by name


def test_pretrained_false_builds_the_architecture():
    backbone, record = load_backbone("equicaps_3diebench", pretrained=False)
    assert type(backbone).__name__ == "SIEResNet" and record["pretrained"] is False
    assert record["backbone"]["feat_dim"] == 512 and record["input_size"] == 256


def test_file_override_loads_the_release_and_warns_that_it_is_unpinned(official_files):
    path = official_files["paths"]["equicaps"]
    with pytest.warns(UnpinnedChecksumWarning):
        backbone, record = load_backbone("equicaps_3diebench", file=path)
    assert record["files"]["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert record["checkpoint"]["results"][0]["value"] == 83.24
    with torch.no_grad():
        assert torch.allclose(
            backbone(X), O.sie_reference_forward(_backbone_sd(official_files["equicaps"]), X), atol=1e-5
        )


def test_download_by_name_from_the_server_verifies_and_caches(official_files, server, monkeypatch):
    data = official_files["paths"]["equicaps"].read_bytes()
    url = server.add("/AberdeenML/EquiCaps/releases/download/v1.0-ckpts/EquiCaps_3DIEBench.pth", data)
    sha = hashlib.sha256(data).hexdigest()
    rec = dataclasses.replace(
        get("equicaps_3diebench"), name="test_equicaps", source=Source("url", url=url), sha256=sha
    )
    monkeypatch.setitem(CHECKPOINTS._items, rec.name, rec)
    first, _ = load_backbone("test_equicaps")
    second, record = load_backbone("test_equicaps")
    assert server.state.count(url[len(server.url) :]) == 1
    assert Path(record["files"]["weights"]).parent == Path(torch.hub.get_dir()) / "checkpoints" / "equivision"
    ref = O.sie_reference_forward(_backbone_sd(official_files["equicaps"]), X)
    with torch.no_grad():
        assert torch.allclose(first(X), ref, atol=1e-5) and torch.equal(first(X), second(X))


def test_seqjepa_by_name_from_an_offline_hf_cache(official_files, isolated_env, monkeypatch):
    data = official_files["paths"]["seqjepa"].read_bytes()
    fill_hf_cache(isolated_env / "hf", "Hafez/seq-JEPA", {"seqjepa_3diebench_rot.pth": data})
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.warns(UnpinnedChecksumWarning):
        backbone, record = load_backbone("seqjepa_3diebench_rot", hf_filename="seqjepa_3diebench_rot.pth")
    assert record["input_size"] == 128 and record["backbone"]["name"] == "resnet18"
    with torch.no_grad():
        assert torch.allclose(
            backbone(X), official_files["seqjepa_parts"]["encoder"](X), rtol=1e-4, atol=1e-5
        )
    pytest.importorskip("equivision.ssl.seqjepa")
    with pytest.warns(UnpinnedChecksumWarning):
        model, rec = load_method("seqjepa_3diebench_rot", hf_filename="seqjepa_3diebench_rot.pth")
    assert model.cfg.seq_len == 3 and rec["method_config"]["action"] == "rot"


# ----------------------------------------------------------------------------- torch.hub


def test_torch_hub_loads_from_the_local_repo(official_files):
    for mod in [m for m in sys.modules if m == "hubconf"]:
        del sys.modules[mod]
    arch = torch.hub.load(str(REPO), "equicaps_3diebench", source="local", pretrained=False)
    assert type(arch).__name__ == "SIEResNet"
    with pytest.warns(UnpinnedChecksumWarning):
        model = torch.hub.load(
            str(REPO),
            "equicaps_3diebench",
            source="local",
            pretrained=True,
            file=official_files["paths"]["equicaps"],
        )
    assert model.equivision_record["name"] == "equicaps_3diebench"
    with torch.no_grad():
        assert torch.allclose(
            model(X), O.sie_reference_forward(_backbone_sd(official_files["equicaps"]), X), atol=1e-5
        )


def test_hubconf_has_one_entry_per_record():
    import importlib.util

    spec = importlib.util.spec_from_file_location("hubconf_under_test", REPO / "hubconf.py")
    hub = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hub)
    entries = {n for n in dir(hub) if not n.startswith("_") and callable(getattr(hub, n))}
    assert entries == set(CHECKPOINTS.names())
    assert "pretrained=False" in hub.seqjepa_3diebench_rot.__doc__


# ----------------------------------------------------------------------------- CLI and README


def test_cli_list_prints_the_table(capsys):
    assert main(["checkpoints", "list"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["name", "method", "backbone", "data", "top-1", "rot.", "R²", "source", "sha256"]
    row = next(line for line in out if line.startswith("equicaps_3diebench "))
    assert row.split()[4:6] == ["83.24", "0.78"] and row.endswith("not yet pinned")
    assert len(out) == 2 + len(CHECKPOINTS.names())
    assert main(["checkpoints", "list", "--json", "--method", "seqjepa"]) == 0
    recs = json.loads(capsys.readouterr().out)
    assert {r["name"] for r in recs} == {"seqjepa_3diebench_rot", "seqjepa_3diebench_rotcolor"}


def test_cli_download_with_file_and_errors(official_files, capsys):
    path = official_files["paths"]["equicaps"]
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    with warnings.catch_warnings():
        warnings.simplefilter("error", UnpinnedChecksumWarning)  # the CLI prints it, it does not warn
        assert main(["checkpoints", "download", "equicaps_3diebench", "--file", str(path)]) == 0
    out = capsys.readouterr()
    assert out.out.strip() == str(path)
    # one plain line: no Python source line, no second line repeating the sha256
    assert out.err.splitlines() == [
        f"equivision: note: equicaps_3diebench: {path} used without a sha256 check (not yet pinned); "
        f"its sha256 is {sha}"
    ]
    assert main(["checkpoints", "download", "nope"]) == 2
    assert "unknown checkpoint 'nope'" in capsys.readouterr().err
    assert main(["checkpoints", "download", "seqjepa_3diebench_rot"]) == 2
    assert "--hf-file" in capsys.readouterr().err


def test_cli_download_of_a_file_named_by_its_hash_notes_the_hash_once(official_files, tmp_path, capsys):
    data = official_files["paths"]["equicaps"].read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    copy = tmp_path / f"EquiCaps-{sha[:8]}.pth"
    copy.write_bytes(data)
    assert main(["checkpoints", "download", "equicaps_3diebench", "--file", str(copy)]) == 0
    assert capsys.readouterr().err.splitlines() == [
        f"equivision: note: equicaps_3diebench: sha256 {sha} (not yet pinned; it matches the hash in its "
        "file name)"
    ]


def test_cli_convert_then_push_dry_run(official_files, tmp_path, capsys):
    out = tmp_path / "sie-export"
    assert (
        main(
            [
                "checkpoints",
                "convert",
                str(official_files["paths"]["sie_final"]),
                "--out",
                str(out),
                "--name",
                "sie_final",
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out.split()
    weights = Path(printed[0])
    assert weights.name.startswith("sie_final-") and weights.parent == out
    backbone, record = load_backbone(out)
    assert record["converted_from"]["converter"] == "sie_backbone"
    with torch.no_grad():
        assert torch.allclose(
            backbone(X), O.sie_reference_forward(official_files["sie_backbone"], X), atol=1e-5
        )
    assert main(["checkpoints", "push", str(out), "--repo", "me/sie", "--dry-run"]) == 0
    assert f"would upload to me/sie: {weights.name}, config.json, README.md" in capsys.readouterr().out
    assert main(["checkpoints", "convert", str(tmp_path / "absent.pth"), "--out", str(out)]) == 2


def test_gen_checkpoint_table_script(capsys):
    sys.path.insert(0, str(REPO / "scripts"))
    try:
        gen = importlib.import_module("gen_checkpoint_table")
    finally:
        sys.path.pop(0)
    assert gen.main([]) == 0
    md = capsys.readouterr().out
    assert md.startswith("## Released checkpoints\n")
    for name in CHECKPOINTS.names():
        assert f"| `{name}`" in md
    row = next(line for line in md.splitlines() if line.startswith("| `equicaps_3diebench` |"))
    assert "| 83.24 | 0.78 |" in row and "not yet pinned" in row


def test_registering_a_published_record(monkeypatch):
    rec = CheckpointRecord(
        name="ours", method="sie", backbone="resnet18", data="3DIEBench",
        source=Source("hf", repo="me/ours", filename="ours-12345678.safetensors", revision="a" * 40),
        converter="equivision_backbone", paper="equivision", license="cc-by-4.0", sha256="1" * 64,
    )  # fmt: skip
    monkeypatch.setitem(CHECKPOINTS._items, rec.name, rec)
    from equivision.checkpoints.table import text_table

    assert "hf:me/ours" in text_table([rec]) and text_table([rec]).splitlines()[-1].endswith("pinned")

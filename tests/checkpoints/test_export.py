"""Export of a pretraining run (hash in the file name, record, model card with the probe table),
export -> load round trips (local folder and an offline Hugging Face snapshot), and push with a fake
Hub client (what is uploaded, the pinned revision, the registry record it prints)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch
from test_hf_offline import fill_hf_cache

from equivision.api import load_backbone
from equivision.backbones import build_backbone
from equivision.checkpoints.download import HashMismatchError
from equivision.checkpoints.export import ExportError, export_run, write_export
from equivision.checkpoints.hub import push_export, registry_snippet
from equivision.ssl.run import RunDir, write_backbone

X = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))


def make_run(root: Path, *, results: bool = True, seed: int = 0) -> tuple[Path, torch.nn.Module]:
    """A finished pretraining run folder as `equivision pretrain` leaves it (random backbone)."""
    torch.manual_seed(seed)
    backbone = build_backbone("resnet18", low_res_stem=True).eval()
    run = RunDir(root / "sie-tiny").create()
    run.config.write_text("method:\n  name: sie\n")
    write_backbone(
        run,
        backbone,
        {
            "method": "sie",
            "backbone": {"name": "resnet18", "low_res_stem": True, "feat_dim": 512},
            "data": {
                "root": "/home/someone/data/iebench-mini",
                "classes": ["a", "b"],
                "latent_size": 7,
                "num_objects": 4,
            },
            "epochs": 2,
            "steps": 8,
            "input_size": 32,
            "mean": [0.5016, 0.5037, 0.506],
            "std": [0.103, 0.0999, 0.0969],
            "invariant_dims": [0, 256],
            "equivariant_dims": [256, 512],
            "config": {"data": {"root": "/home/someone/data/iebench-mini"}, "method": {"name": "sie"}},
        },
    )
    if results:
        doc = {
            "format": "equivision-probe-results/1",
            "name": "sie (sie-tiny)",
            "checkpoint": {},
            "data": {},
            "protocol": {"epochs": 5, "r2_definitions": {}},
            "notes": [],
            "probes": {
                "linear/full": {"top1": 0.5, "top5": 0.9, "chosen": {"lr": 0.001, "weight_decay": 0.0}},
                "rotation/equivariant": {
                    "r2_global": 0.25,
                    "r2_per_output": 0.2,
                    "chosen": {"lr": 0.01, "weight_decay": 0.0},
                },
            },
        }
        (run.report / "probes").mkdir(parents=True)
        (run.report / "probes" / "results.json").write_text(json.dumps(doc))
    return run.path, backbone


def test_export_writes_hash_named_weights_record_and_card(tmp_path):
    run, _ = make_run(tmp_path)
    res = export_run(run, license="cc-by-4.0")
    digest = hashlib.sha256(res.weights.read_bytes()).hexdigest()
    assert res.folder == run / "export"
    assert res.weights.name == f"sie-tiny-{digest[:8]}.safetensors"
    cfg = json.loads(res.config.read_text())
    assert (
        cfg["sha256"] == digest
        and cfg["file"] == res.weights.name
        and cfg["format"] == "equivision-backbone/1"
    )
    assert (
        cfg["data"]["root"] == "iebench-mini" and cfg["config"]["data"]["root"] == "iebench-mini"
    )  # no local paths
    assert cfg["results"]["probes"]["linear/full"]["top1"] == 0.5
    card = res.card.read_text()
    assert card.startswith("---\nlicense: cc-by-4.0\n")
    assert "| linear/full | 50.00 | 90.00 |" in card and "| rotation/equivariant | 0.250 | 0.200 |" in card
    assert digest in card and "[256, 512)" in card


def test_export_load_round_trip_gives_identical_features(tmp_path):
    run, original = make_run(tmp_path)
    res = export_run(run, tmp_path / "out", name="mine")
    with torch.no_grad():
        expected = original(X)
        for target in (res.folder, res.weights, res.config):
            backbone, record = load_backbone(target)
            assert torch.equal(backbone(X), expected)
            assert record["files"]["sha256"] == record["sha256"] and record["invariant_dims"] == [0, 256]


def test_export_without_probe_results_says_so(tmp_path):
    run, _ = make_run(tmp_path, results=False)
    res = export_run(run)
    assert "No probe results were exported" in res.card.read_text()
    assert "results" not in res.record


def test_a_new_export_replaces_the_previous_weights_file(tmp_path):
    bb = build_backbone("resnet18", low_res_stem=True)
    rec = {"method": "x", "backbone": {"name": "resnet18", "low_res_stem": True}}
    first = write_export(tmp_path, bb.state_dict(), rec, name="m")
    torch.nn.init.zeros_(bb.model.fc if hasattr(bb.model.fc, "weight") else bb.model.conv1.weight)
    second = write_export(tmp_path, bb.state_dict(), rec, name="m")
    assert first.weights != second.weights
    assert sorted(p.name for p in tmp_path.glob("*.safetensors")) == [second.weights.name]


def test_export_refuses_weights_that_do_not_fit_the_backbone(tmp_path):
    sd = build_backbone("resnet18").state_dict()
    sd.pop("model.conv1.weight")
    with pytest.raises(ExportError, match="missing keys.*model.conv1.weight"):
        write_export(tmp_path, sd, {"backbone": {"name": "resnet18"}}, name="m")
    with pytest.raises(ExportError, match="export name"):
        write_export(tmp_path, sd, {"backbone": {"name": "resnet18"}}, name="bad name/x")


def test_tampered_export_is_refused(tmp_path):
    run, _ = make_run(tmp_path, results=False)
    res = export_run(run)
    data = bytearray(res.weights.read_bytes())
    data[-1] ^= 0xFF
    res.weights.write_bytes(bytes(data))
    with pytest.raises(HashMismatchError):
        load_backbone(res.folder)


def test_pushed_export_loads_offline_from_the_hf_cache(tmp_path, isolated_env, monkeypatch):
    run, original = make_run(tmp_path, results=False)
    res = export_run(run, tmp_path / "out", name="tiny")
    files = {p.name: p.read_bytes() for p in (res.weights, res.config, res.card)}
    fill_hf_cache(isolated_env / "hf", "me/tiny-sie", files)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    backbone, record = load_backbone("hf://me/tiny-sie")
    assert record["files"]["source"] == "hf://me/tiny-sie"
    with torch.no_grad():
        assert torch.equal(backbone(X), original(X))


class FakeApi:
    def __init__(self) -> None:
        self.calls: list[tuple[str, dict]] = []

    def create_repo(self, repo_id, **kw):
        self.calls.append(("create_repo", {"repo_id": repo_id, **kw}))

    def create_branch(self, repo_id, **kw):
        self.calls.append(("create_branch", {"repo_id": repo_id, **kw}))

    def upload_folder(self, **kw):
        self.calls.append(("upload_folder", kw))
        # what the Hub would receive: the README as it is on disk now
        kw_files = {
            p: (Path(kw["folder_path"]) / p).read_text(errors="replace") for p in kw["allow_patterns"]
        }
        self.uploaded = kw_files
        return type("CommitInfo", (), {"oid": "f" * 40, "commit_url": "https://hf.co/me/m/commit/fff"})()


def test_push_uploads_exactly_the_export_and_returns_the_commit(tmp_path):
    run, _ = make_run(tmp_path)
    res = export_run(run)
    api = FakeApi()
    out = push_export(res.folder, "me/sie-tiny", revision="v1", api=api)
    names = [c[0] for c in api.calls]
    assert names == ["create_repo", "create_branch", "upload_folder"]
    upload = api.calls[-1][1]
    assert upload["repo_id"] == "me/sie-tiny" and upload["revision"] == "v1"
    assert upload["allow_patterns"] == [res.weights.name, "config.json", "README.md"]
    assert "hf://me/sie-tiny" in api.uploaded["README.md"] and "ORG/REPO" not in api.uploaded["README.md"]
    assert out.revision == "f" * 40

    from equivision.checkpoints import registry as R

    ns = {
        "register": lambda rec: rec,
        "CheckpointRecord": R.CheckpointRecord,
        "Source": R.Source,
        "Result": R.Result,
    }
    rec = eval(registry_snippet(out.record, "me/sie-tiny", out.revision), ns)  # noqa: S307 - our own generated code
    assert rec.name == "sie_tiny" and rec.sha256 == out.record["sha256"] and rec.pinned
    assert rec.source.describe() == f"hf://me/sie-tiny/{res.weights.name}@{'f' * 40}"
    assert rec.result("top1").value == 50.0 and rec.equivariant_dims == (256, 512)
    assert rec.backbone_kwargs == {"low_res_stem": True} and rec.converter == "equivision_backbone"


def test_push_checks_before_any_request(tmp_path, monkeypatch):
    run, _ = make_run(tmp_path, results=False)
    res = export_run(run)
    api = FakeApi()
    assert push_export(res.folder, "me/x", dry_run=True, api=api).revision is None and api.calls == []
    with pytest.raises(ExportError, match="org/name"):
        push_export(res.folder, "no-slash", api=api)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ExportError, match="offline"):
        push_export(res.folder, "me/x", api=api)
    (res.folder / "README.md").unlink()
    with pytest.raises(ExportError, match="model card"):
        push_export(res.folder, "me/x", dry_run=True)
    assert api.calls == []


def test_cli_export(tmp_path, capsys):
    from equivision.cli import main

    run, _ = make_run(tmp_path, results=False)
    assert main(["checkpoints", "export", str(run), "--out", str(tmp_path / "o"), "--name", "x"]) == 0
    printed = [Path(p) for p in capsys.readouterr().out.split()]
    assert [p.name for p in printed[1:]] == ["config.json", "README.md"] and printed[0].name.startswith("x-")
    assert main(["checkpoints", "export", str(tmp_path / "missing-run")]) == 2
    assert "does not exist" in capsys.readouterr().err

"""Pillar encoder, E-SSL3D targets and losses, flow warping, and a few pretraining steps."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from _lidar_fakes import tiny_render_config

from equivision.ssl.lidar.augment import (
    AugmentRanges,
    Similarity,
    bin_centre,
    rotation_bin,
    sample_similarity,
)
from equivision.ssl.lidar.flow import nearest_flow, warp_features
from equivision.ssl.lidar.losses import masked_map_byol_loss, point_info_nce
from equivision.ssl.lidar.pillars import BEVGrid, EncoderSpec, LidarEncoder, PillarNet

GRID = BEVGrid((-8.0, 8.0), (-8.0, 8.0), (-3.0, 3.0), 0.5)  # 32 x 32 pillars
TINY = EncoderSpec(backbone="test_resnet", pillar_channels=8, neck_channels=16, out_stride=2,
                   x_range=(-8.0, 8.0), y_range=(-8.0, 8.0), pillar_size=0.5)  # fmt: skip


def random_scan(n: int = 400, seed: int = 0, extent: float = 7.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    xyz = (torch.rand(n, 3, generator=g) * 2 - 1) * torch.tensor([extent, extent, 1.0])
    return torch.cat([xyz, torch.rand(n, 1, generator=g)], dim=1)


def test_pillars_scatter_points_to_their_cell_and_keep_items_apart():
    net = PillarNet(GRID, channels=4).eval()
    pts = torch.tensor([[0.1, -7.9, 0.0, 0.5], [5.2, 3.3, 0.2, 0.1], [9.0, 0.0, 0.0, 0.0]])  # last: outside
    img = net(pts, torch.tensor([0, 1, 0]), batch_size=2)
    assert img.shape == (2, 4, 32, 32)
    occupied = (img.abs().sum(1) > 0).nonzero().tolist()
    # x = 0.1 -> column (0.1 + 8) / 0.5 = 16, y = -7.9 -> row 0; (5.2, 3.3) -> column 26, row 22
    assert occupied == [[0, 0, 16], [1, 22, 26]]


def test_encoder_gives_a_map_at_the_output_stride_for_any_timm_backbone():
    enc = LidarEncoder(TINY)
    pts = torch.cat([random_scan(300, 0), random_scan(200, 1)])
    b = torch.cat([torch.zeros(300), torch.ones(200)]).long()
    h = enc(pts, b, 2)
    assert h.shape == (2, 16, 16, 16) and enc.out_shape == (16, 16) and torch.isfinite(h).all()
    with pytest.raises(ValueError, match="must divide"):
        LidarEncoder(EncoderSpec(**{**TINY.__dict__, "out_stride": 3}))


@pytest.mark.parametrize("k", range(10))
def test_rotating_a_scan_by_a_bins_angle_makes_that_bin_the_target(k):
    import equivision.ssl.lidar.method  # noqa: F401
    from equivision.ssl.registry import build_method

    method = build_method("essl3d", LidarEncoder(TINY), {"hidden_dim": 8, "proj_dim": 8})
    angle = float(bin_centre(k))
    tb = Similarity(torch.tensor([angle]), torch.zeros(1, 3), torch.ones(1), torch.tensor([False]))
    pts = random_scan(50)
    b = torch.zeros(50, dtype=torch.long)
    rotated = tb.apply(pts, b)
    # the angle seen in the points (least squares 2D rotation) falls in bin k, and so does the target
    p, q = pts[:, :2].double(), rotated[:, :2].double()
    seen = math.atan2(float((p[:, 0] * q[:, 1] - p[:, 1] * q[:, 0]).sum()), float((p * q).sum()))
    assert seen == pytest.approx(angle, abs=1e-5)
    assert int(rotation_bin(torch.tensor(seen))) == k == int(method.rotation_target(tb)[0])


def test_rotation_bins_cover_the_range_evenly():
    edges = torch.linspace(-math.pi / 2, math.pi / 2, 11)
    assert rotation_bin(edges[:-1] + 1e-6).tolist() == list(range(10))
    assert rotation_bin(edges[1:] - 1e-6).tolist() == list(range(10))
    assert rotation_bin(torch.tensor([-10.0, 10.0])).tolist() == [0, 9]  # clamped


def test_contrastive_pairs_are_the_same_physical_points():
    import equivision.ssl.lidar.method  # noqa: F401
    from equivision.ssl.registry import build_method

    method = build_method("essl3d", LidarEncoder(TINY), {"hidden_dim": 8, "proj_dim": 8, "num_points": 64})
    pts = torch.cat([random_scan(300, 0), random_scan(300, 1)])
    b = torch.cat([torch.zeros(300), torch.ones(300)]).long()
    torch.manual_seed(0)
    ta, tb = method.sample_views(2, torch.device("cpu"))
    assert torch.all(ta.angle == 0) and torch.all(tb.angle.abs() > 0)
    pa, pb = ta.apply(pts, b), tb.apply(pts, b)
    matched = method.match_points(pa, pb, b, 2)
    assert len(matched) == 2 and all(len(i) == 64 for i in matched)
    for item, idx in enumerate(matched):
        assert torch.all(b[idx] == item)
        back_a, back_b = ta.invert_xyz(pa[idx, :3], b[idx]), tb.invert_xyz(pb[idx, :3], b[idx])
        torch.testing.assert_close(back_a, pts[idx, :3], atol=1e-5, rtol=0)
        torch.testing.assert_close(back_b, pts[idx, :3], atol=1e-5, rtol=0)
        assert GRID.inside(pa[idx]).all() and GRID.inside(pb[idx]).all()


def test_augmentation_ranges_and_flip():
    t = sample_similarity(500, AugmentRanges(), generator=torch.Generator().manual_seed(0))
    assert t.angle.abs().max() < math.pi / 2 and t.translation.abs().max() <= 0.2
    assert t.scale.min() >= 0.95 and t.scale.max() <= 1.05 and 0.4 < t.flip.float().mean() < 0.6
    flip = Similarity(torch.zeros(1), torch.zeros(1, 3), torch.ones(1), torch.tensor([True]))
    out = flip.apply(torch.tensor([[1.0, 2.0, 3.0, 0.7]]), torch.zeros(1, dtype=torch.long))
    torch.testing.assert_close(out, torch.tensor([[1.0, -2.0, 3.0, 0.7]]))


def test_flow_warp_of_a_static_scene_is_the_identity():
    pts = random_scan(500)[:, :3]
    b = torch.zeros(500, dtype=torch.long)
    fmap = torch.randn(1, 5, 16, 16)
    warped, mask = warp_features(fmap, pts, b, torch.zeros_like(pts), GRID, stride=2)
    cells = GRID.to_cells(pts[:, :2], 2).floor().long()
    occ = torch.zeros(16, 16, dtype=torch.bool)
    occ[cells[:, 1], cells[:, 0]] = True
    assert torch.equal(mask[0], occ) and 50 < occ.sum() < 256
    torch.testing.assert_close(warped[0][:, occ], fmap[0][:, occ])
    assert torch.all(warped[0][:, ~occ] == 0)
    # a flow of exactly one output cell (1 m) along +x moves every feature one column to the right
    one = torch.tensor([[1.0, 0.0, 0.0]]).expand_as(pts)
    warped2, mask2 = warp_features(fmap, pts, b, one, GRID, stride=2)
    keep = occ[:, :-1]
    torch.testing.assert_close(warped2[0][:, :, 1:][:, keep], fmap[0][:, :, :-1][:, keep])


def test_nearest_flow_recovers_a_rigid_shift():
    xs = torch.arange(-5.0, 5.0)  # a 1 m lattice: the shifted copy is always the nearest point
    prev = torch.stack(torch.meshgrid(xs, xs, torch.zeros(1), indexing="ij"), -1).reshape(-1, 3)
    cur = prev + torch.tensor([0.05, -0.02, 0.0])
    b = torch.zeros(len(prev), dtype=torch.long)
    flow = nearest_flow(prev, b, cur[torch.randperm(len(cur))], b)
    torch.testing.assert_close(flow, cur - prev)


def test_point_info_nce_by_hand_and_byol_map_loss():
    za = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    zb = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    # logits row 0: [1, 1/sqrt2] / 0.5, row 1: [0, 1/sqrt2] / 0.5; targets diagonal
    s = 1 / math.sqrt(2)
    want = 0.5 * (-(2) + math.log(math.exp(2) + math.exp(2 * s)) - 2 * s + math.log(1 + math.exp(2 * s)))
    assert float(point_info_nce(za, zb, 0.5)) == pytest.approx(want, rel=1e-6)
    p = torch.randn(2, 3, 4, 4)
    mask = torch.zeros(2, 4, 4, dtype=torch.bool)
    mask[0, 1, 2] = mask[1, 3, 3] = True
    assert float(masked_map_byol_loss(p, p * 3, mask)) == pytest.approx(0.0, abs=1e-6)
    assert float(masked_map_byol_loss(p, -p, mask)) == pytest.approx(4 * 2 / 32, rel=1e-5)


@pytest.fixture(scope="module")
def tiny_scans(tmp_path_factory):
    from equivision.renderers.lidar import run_lidar_render
    from equivision.renderers.lidar_scene import LidarSceneSettings, LidarSensor

    out = tmp_path_factory.mktemp("scans")
    sensor = LidarSensor(beams=8, azimuth_steps=128, max_range=20.0)
    cfg = tiny_render_config(out, sequences=1, sensor=sensor,
                             scene=LidarSceneSettings(frames=3, objects_min=4, objects_max=4, area_radius=7.0,
                                                      clear_radius=3.0))  # fmt: skip
    run_lidar_render(cfg, progress=False)
    return out


def tiny_pretrain_overrides(root, out) -> list[str]:
    return [
        f"data.root={root}", "data.split=all", "data.batch_size=2", "data.max_points=2000",
        "encoder.backbone=test_resnet", "encoder.x_range=[-8,8]", "encoder.y_range=[-8,8]",
        "encoder.pillar_size=0.5", "encoder.pillar_channels=8", "encoder.neck_channels=16",
        "encoder.out_stride=2",
        "method.proj_dim=16", "method.hidden_dim=16", "method.num_points=64", "optim.lr=0.003",
        "epochs=100", "max_steps=8", "log_every=1", f"out_dir={out}", "run_name=tiny",
    ]  # fmt: skip


def test_pretraining_runs_with_decreasing_loss_and_saves_a_loadable_encoder(tiny_scans, tmp_path):
    from equivision.ssl.lidar.train import load_lidar_config, load_lidar_encoder, pretrain_lidar

    cfg = load_lidar_config(overrides=tiny_pretrain_overrides(tiny_scans, tmp_path))
    rd = pretrain_lidar(cfg)
    recs = [json.loads(line) for line in (rd / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in recs if r["kind"] == "step"]
    assert len(losses) == 8 and all(math.isfinite(v) for v in losses)
    assert np.mean(losses[-3:]) < np.mean(losses[:3])
    assert recs[0]["flow_cells"] > 0 and 0 <= recs[0]["rot_acc"] <= 1
    for rel in ("config.yaml", "checkpoints/last.pt", "checkpoints/backbone.json", "report/loss.png"):
        assert (rd / rel).is_file(), rel
    enc, record = load_lidar_encoder(rd)
    assert record["kind"] == "lidar-pillars" and record["steps"] == 8 and enc.spec.backbone == "test_resnet"
    # running again is a no-op; another config in the same folder is refused
    assert pretrain_lidar(cfg) == rd
    from equivision.ssl.run import RunError

    other = load_lidar_config(overrides=[*tiny_pretrain_overrides(tiny_scans, tmp_path), "optim.lr=0.1"])
    with pytest.raises(RunError, match=r"optim.lr.*pass --resume"):
        pretrain_lidar(other)
    # a folder whose checkpoint is of step 0 (a run that failed before its first step) starts afresh
    from equivision.ssl.run import load_checkpoint, save_checkpoint

    ckpt = load_checkpoint(rd / "checkpoints" / "last.pt")
    ckpt["state"] = {**ckpt["state"], "step": 0, "finished": False}
    save_checkpoint(rd / "checkpoints" / "last.pt", {k: v for k, v in ckpt.items() if k != "format"})
    assert pretrain_lidar(other) == rd
    assert load_checkpoint(rd / "checkpoints" / "last.pt")["state"]["step"] == 8
    assert "optim:\n  name: adamw\n  lr: 0.1" in (rd / "config.yaml").read_text()


def test_unknown_config_key_is_named():
    from equivision.ssl.config import ConfigError
    from equivision.ssl.lidar.train import load_lidar_config

    with pytest.raises(ConfigError, match="method.weight_flw"):
        load_lidar_config(overrides=["data.root=x", "method.weight_flw=1"])


@pytest.mark.parametrize(
    ("value", "message"), [("0", "must be a positive integer"), ("1", "at least 2 samples")]
)
def test_batch_of_one_is_a_config_error(value, message):
    # a batch of one reached torch's BatchNorm error at the first step (after writing last.pt)
    from equivision.ssl.config import ConfigError
    from equivision.ssl.lidar.train import load_lidar_config

    with pytest.raises(ConfigError, match=f"data.batch_size={value} .*{message}"):
        load_lidar_config(overrides=["data.root=x", f"data.batch_size={value}"])
    load_lidar_config(overrides=["data.root=x", "data.batch_size=2"])  # the smallest that works

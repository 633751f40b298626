"""BEV detection probe: IoU and AP by hand, target encoding <-> decoding, and the protocol end to end."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from equivision.benchmarks import lidar_detection as D
from equivision.ssl.lidar.pillars import BEVGrid

CAR = np.array([[10.0, 5.0, -0.9, 4.2, 1.8, 1.5, 0.3]])


def shifted(boxes: np.ndarray, metres: float) -> np.ndarray:
    out = boxes.copy()
    out[:, 0] += metres * np.cos(boxes[:, 6])
    out[:, 1] += metres * np.sin(boxes[:, 6])
    return out


def test_iou_by_hand():
    assert D.box_iou(CAR, CAR)[0, 0] == pytest.approx(1.0)
    assert D.box_iou(CAR, CAR, "3d")[0, 0] == pytest.approx(1.0)
    # 1 m along the heading: overlap 3.2 x 1.8, union 2 x 4.2 x 1.8 - 3.2 x 1.8
    assert D.box_iou(CAR, shifted(CAR, 1.0))[0, 0] == pytest.approx(3.2 / 5.2)
    # a 2 m square and the same square turned 45 degrees: the octagon 4 - 4 (3 - 2 sqrt 2)
    sq = np.array([[0.0, 0.0, 0.0, 2.0, 2.0, 1.0, 0.0]])
    turned = sq.copy()
    turned[0, 6] = math.pi / 4
    octagon = 4 - 4 * (3 - 2 * math.sqrt(2))
    assert D.box_iou(sq, turned)[0, 0] == pytest.approx(octagon / (8 - octagon))
    up = sq.copy()
    up[0, 2] = 0.5  # half the height overlaps: 2 / (4 + 4 - 2)
    assert D.box_iou(sq, up)[0, 0] == pytest.approx(1.0) and D.box_iou(sq, up, "3d")[0, 0] == pytest.approx(
        1 / 3
    )
    far = sq.copy()
    far[0, 0] = 3.0
    assert D.box_iou(sq, far)[0, 0] == 0.0
    with pytest.raises(ValueError, match="IoU kind"):
        D.box_iou(sq, sq, "2d")


def frames_gt() -> list[dict]:
    b2 = np.array([[-6.0, 2.0, -1.2, 0.9, 0.6, 1.0, -1.0], [3.0, -8.0, -0.9, 4.0, 1.7, 1.4, 2.0]])
    return [{"boxes": CAR, "labels": np.array([0])}, {"boxes": b2, "labels": np.array([1, 0])}]


def as_detections(gt: list[dict], fn=lambda b: b) -> list[dict]:
    return [
        {"boxes": fn(g["boxes"]), "labels": g["labels"], "scores": np.linspace(0.9, 0.5, len(g["labels"]))}
        for g in gt
    ]


def test_ap_is_one_on_ground_truth_and_drops_for_shifted_boxes():
    gt = frames_gt()
    res = D.evaluate_detections(as_detections(gt), gt, ["Car", "Chair"])
    for kind in ("bev", "3d"):
        for thr in ("0.5", "0.7"):
            assert res["mAP"][kind][thr] == pytest.approx(1.0)
            assert res["AP"][kind][thr] == {"Car": pytest.approx(1.0), "Chair": pytest.approx(1.0)}
    # cars shifted 1 m: IoU 3.2/5.2 = 0.615 (and about 0.60 for the 4 m car) -> AP 1 at 0.5, 0 at 0.7
    cars = D.evaluate_detections(as_detections(gt, lambda b: shifted(b, 1.0)), gt, ["Car"])
    assert cars["AP"]["bev"]["0.5"]["Car"] == pytest.approx(1.0) and cars["AP"]["bev"]["0.7"]["Car"] == 0.0
    far = D.evaluate_detections(as_detections(gt, lambda b: shifted(b, 5.0)), gt, ["Car", "Chair"])
    assert far["mAP"]["bev"]["0.5"] == 0.0


def test_ap_r40_by_hand_with_a_false_positive_ranked_first():
    gt = [{"boxes": np.concatenate([CAR, shifted(CAR, 20.0)]), "labels": np.array([0, 0])}]
    # detections: a false positive (score 0.9), the first car (0.8); the second car is missed
    dets = [{"boxes": np.concatenate([shifted(CAR, -10.0), CAR]), "labels": np.array([0, 0]),
             "scores": np.array([0.9, 0.8])}]  # fmt: skip
    # recall reaches 0.5 with precision 1/2: R40 points 1/40 .. 20/40 get 0.5, the rest 0
    assert D.average_precision(dets, gt, 0, 0.7) == pytest.approx(20 * 0.5 / 40)
    assert math.isnan(D.average_precision(dets, gt, 1, 0.7))  # no ground truth of class 1


def three_cars() -> np.ndarray:
    return np.concatenate([CAR, shifted(CAR, 20.0), shifted(CAR, -20.0)])  # A, B, C: 20 m apart


def test_a_detection_of_an_ignored_box_is_neither_true_nor_false_positive():
    # B has no points: ignored at min_points 1. Ranked: B 0.9, A 0.8, a false positive 0.7, C 0.6
    gt = [{"boxes": three_cars(), "labels": np.array([0, 0, 0]), "num_points": np.array([30, 0, 12])}]
    boxes = np.concatenate([three_cars()[1:2], CAR, shifted(CAR, 10.0), three_cars()[2:3]])
    dets = [{"boxes": boxes, "labels": np.zeros(4, int), "scores": np.array([0.9, 0.8, 0.7, 0.6])}]
    # min_points 1: B's detection leaves the ranking -> TP, FP, TP of 2 boxes: recall 1/2 at
    # precision 1, recall 1 at precision 2/3 -> R40 = (20 x 1 + 20 x 2/3) / 40
    assert D.average_precision(dets, gt, 0, 0.7, min_points=1) == pytest.approx((20 + 20 * 2 / 3) / 40)
    # min_points 0: TP, TP, FP, TP of 3 boxes: precision 1 up to recall 2/3 (R40 points 1..26), then
    # 3/4 at recall 1 (points 27..40)
    assert D.average_precision(dets, gt, 0, 0.7, min_points=0) == pytest.approx((26 + 14 * 0.75) / 40)
    assert D.average_precision(dets, gt, 0, 0.7) == D.average_precision(dets, gt, 0, 0.7, min_points=0)
    # a second detection of B finds it taken and nothing else: a false positive, ranked above A
    dup = [{"boxes": np.concatenate([three_cars()[1:2], three_cars()[1:2], CAR]), "labels": np.zeros(3, int),
            "scores": np.array([0.9, 0.85, 0.8])}]  # fmt: skip
    gt_ab = [{"boxes": three_cars()[:2], "labels": np.array([0, 0]), "num_points": np.array([30, 0])}]
    assert D.average_precision(dup, gt_ab, 0, 0.7, min_points=1) == pytest.approx(0.5)  # FP then TP


def test_a_box_without_points_is_ignored_at_min_points_1_and_counted_at_0():
    gt_boxes = three_cars()[:2]  # A and B
    rng = np.random.default_rng(0)
    cloud = np.concatenate([CAR[:, :3] + rng.uniform(-0.4, 0.4, (3, 3)), np.ones((3, 1))], axis=1)
    counts = D.points_in_boxes(cloud, gt_boxes)  # three points inside A, none inside B
    assert counts.tolist() == [3, 0]
    gt = [{"boxes": gt_boxes, "labels": np.array([0, 0]), "num_points": counts}]
    dets = [{"boxes": CAR, "labels": np.array([0]), "scores": np.array([0.9])}]  # A found, B missed
    res1 = D.evaluate_detections(dets, gt, ["Car"], min_points=1)
    res0 = D.evaluate_detections(dets, gt, ["Car"], min_points=0)
    assert res1["AP"]["bev"]["0.7"]["Car"] == pytest.approx(1.0)  # B does not count
    assert res0["AP"]["bev"]["0.7"]["Car"] == pytest.approx(20 / 40)  # recall 1/2 at precision 1
    assert res1["mAP"]["3d"]["0.5"] == pytest.approx(1.0) and res0["mAP"]["3d"]["0.5"] == pytest.approx(0.5)
    # 3 points count at min_points 3; at 4 no Car box counts: NaN, as a class without ground truth
    assert D.average_precision(dets, gt, 0, 0.7, min_points=3) == pytest.approx(1.0)
    assert math.isnan(D.average_precision(dets, gt, 0, 0.7, min_points=4))
    summary = D.ignored_summary(
        gt + [{"labels": np.array([1]), "num_points": np.array([0])}], ["Car", "Van"], 1
    )
    assert summary == {
        "min_points": 1,
        "boxes": 3,
        "ignored_boxes": 2,
        "ignored_per_class": {"Car": 1, "Van": 1},
    }
    with pytest.raises(ValueError, match="num_points"):
        D.average_precision(dets, [{"boxes": gt_boxes, "labels": np.array([0, 0])}], 0, 0.7, min_points=1)
    with pytest.raises(ValueError, match=">= 0"):
        D.average_precision(dets, gt, 0, 0.7, min_points=-1)


def test_points_in_a_rotated_box_by_hand():
    # a 4 x 2 x 1 m box at (2, 1, 0.5) turned 45 degrees: u along its length, v across
    box = np.array([[2.0, 1.0, 0.5, 4.0, 2.0, 1.0, math.pi / 4]])
    u, v = np.array([1.0, 1.0]) / math.sqrt(2), np.array([-1.0, 1.0]) / math.sqrt(2)
    centre = np.array([2.0, 1.0])

    def at(xy, z=0.5):
        return [*(centre + xy), z, 0.3]

    # the last of each list: (1.2, 1.2) is 1.70 m along (outside the unturned box); (1.8, -0.8) is
    # 1.84 m across (inside the unturned box)
    inside = [at(0 * u), at(1.9 * u), at(-1.9 * u), at(0.9 * v), at(-0.9 * v + 1.5 * u), at(0 * u, 0.05),
              at(np.array([1.2, 1.2]))]  # fmt: skip
    outside = [at(2.1 * u), at(-1.1 * v), at(0 * u, 1.1), at(0 * u, -0.1), at(np.array([1.8, -0.8]))]
    cloud = np.array(inside + outside)
    unturned = box.copy()
    unturned[0, 6] = 0.0
    empty = np.array([[-5.0, -5.0, 0.0, 1.0, 1.0, 1.0, 0.3]])
    # the unturned box holds the centre, 0.9 v, 1.5 u - 0.9 v, z 0.05, -1.1 v and (1.8, -0.8)
    assert D.points_in_boxes(cloud, np.concatenate([box, unturned, empty])).tolist() == [7, 6, 0]
    assert D.points_in_boxes(cloud, np.zeros((0, 7))).shape == (0,)


def test_targets_decode_back_to_the_boxes():
    grid = BEVGrid((-16.0, 16.0), (-16.0, 16.0), (-3.0, 3.0), 0.5)
    boxes = [torch.tensor([[3.3, -7.1, -0.8, 4.1, 1.7, 1.4, 2.5], [-10.0, 4.0, -1.0, 0.9, 0.5, 1.0, -0.4]]),
             torch.zeros(0, 7)]  # fmt: skip
    labels = [torch.tensor([1, 0]), torch.zeros(0, dtype=torch.long)]
    heat, reg, mask = D.make_targets(boxes, labels, grid, stride=2, num_classes=2)
    assert heat.shape == (2, 2, 32, 32) and mask.sum() == 2 and heat.max() == 1.0
    assert heat[0, 1].eq(1).sum() == 1 and heat[1].max() == 0
    logits = torch.logit(heat.clamp(1e-6, 1 - 1e-6))
    out = D.decode(logits, reg, grid, stride=2, score_threshold=0.99)
    assert len(out[1]["scores"]) == 0
    order = np.argsort(out[0]["labels"])[::-1]
    got, want = out[0]["boxes"][order], boxes[0].numpy()
    np.testing.assert_allclose(got[:, :6], want[:, :6], atol=1e-5)
    # the head encodes the box axis (yaw modulo pi): 2.5 comes back as 2.5 - pi, the same footprint
    np.testing.assert_allclose(got[:, 6], [2.5 - math.pi, -0.4], atol=1e-5)
    assert D.box_iou(got, want).diagonal() == pytest.approx([1.0, 1.0], abs=1e-4)
    assert out[0]["labels"][order].tolist() == [1, 0]
    # the targets as predictions cost much less than the initial constant 0.1 prediction
    assert float(D.focal_loss(logits, heat)) < 0.05 * float(
        D.focal_loss(torch.full_like(logits, -2.19), heat)
    )


def test_a_box_turned_by_pi_gets_the_same_targets():
    grid = BEVGrid((-8.0, 8.0), (-8.0, 8.0), (-3.0, 3.0), 0.5)
    box = torch.tensor([[2.2, -3.1, -0.8, 1.8, 0.4, 0.5, 0.7]])
    turned = box.clone()
    turned[0, 6] -= math.pi
    a = D.make_targets([box], [torch.tensor([0])], grid, 1, 1)
    b = D.make_targets([turned], [torch.tensor([0])], grid, 1, 1)
    for x, y in zip(a, b, strict=True):
        assert torch.allclose(x, y, atol=1e-6)
    # sin 2 yaw and cos 2 yaw at the centre cell; a quarter turn flips cos 2 yaw's sign
    reg = a[1][0, :, a[2][0]][:, 0]
    assert reg[6:].tolist() == pytest.approx([math.sin(1.4), math.cos(1.4)], abs=1e-6)
    quarter = box.clone()
    quarter[0, 6] += math.pi / 2
    q = D.make_targets([quarter], [torch.tensor([0])], grid, 1, 1)
    assert q[1][0, 6:, q[2][0]][:, 0].tolist() == pytest.approx([-math.sin(1.4), -math.cos(1.4)], abs=1e-6)


def test_the_regression_loss_is_summed_over_channels_and_averaged_over_centres():
    heat_t = torch.zeros(1, 1, 4, 4)
    heat_t[0, 0, 1, 2] = heat_t[0, 0, 3, 0] = 1.0
    mask = heat_t[:, 0] == 1
    reg_t = torch.zeros(1, D.REG_CHANNELS, 4, 4)
    reg = reg_t.clone()
    reg[0, :, 1, 2] = 0.5  # 8 channels off by 0.5 at one centre: sum 4, mean over 2 centres 2
    reg[0, :, 0, 0] = 9.0  # away from the centres: not counted
    logits = torch.logit(heat_t.clamp(1e-6, 1 - 1e-6))
    out = D.detection_loss(logits, reg, (heat_t, reg_t, mask), reg_weight=0.25)
    assert float(out["regression_loss"]) == pytest.approx(2.0)
    assert float(out["loss"]) == pytest.approx(float(out["heatmap_loss"]) + 0.5)


def test_rendered_labels_enclose_their_points_and_perfect_targets_score_ap_1(tiny_dataset):
    """The label convention end to end: render -> label_2 (camera frame) -> LiDAR boxes -> targets."""
    from equivision.data.kitti import read_frame
    from equivision.renderers.lidar_scene import rot_z
    from equivision.ssl.lidar.data import LidarFrames, list_frames

    inside, total, worst = 0, 0, 0.0
    for folder, fid in list_frames(tiny_dataset, "all"):
        fr = read_frame(folder, fid)
        hit = sorted(set(np.unique(fr.instance).tolist()) - {0})  # the labels are the objects hit, in order
        assert len(hit) == len(fr.boxes)
        for box, k in zip(fr.boxes, hit, strict=True):
            local = (fr.points[fr.instance == k, :3] - box[:3]) @ rot_z(box[6])  # box frame
            out = np.maximum(np.abs(local) - box[3:6] / 2, 0).max(axis=1)  # 0 inside the box
            inside += int((out <= 0.05).sum())  # 2 cm range noise, labels rounded to 1 cm / 0.01 rad
            total, worst = total + len(out), max(worst, float(out.max()))
    assert total >= 20 and inside >= 0.95 * total and worst < 0.15
    grid = BEVGrid((-12.0, 12.0), (-12.0, 12.0), (-3.0, 3.0), 0.25)
    classes = ["Bench", "Car"]
    ds = LidarFrames(tiny_dataset, classes, "all")
    dets, gts = [], []
    for i in range(len(ds)):
        it = ds[i]
        assert grid.inside(it["boxes"][:, :3]).all()
        heat, reg, _ = D.make_targets([it["boxes"]], [it["labels"]], grid, 2, len(classes))
        dets += D.decode(torch.logit(heat.clamp(1e-6, 1 - 1e-6)), reg, grid, 2, score_threshold=0.5)
        gts.append({"boxes": it["boxes"].numpy(), "labels": it["labels"].numpy()})
    assert sum(len(g["labels"]) for g in gts) >= 4
    res = D.evaluate_detections(dets, gts, classes)
    assert res["mAP"]["bev"]["0.7"] == pytest.approx(1.0) and res["mAP"]["3d"]["0.7"] == pytest.approx(1.0)


def test_cached_frames_read_each_item_once():
    reads = []

    class Frames:
        def __len__(self):
            return 3

        def __getitem__(self, i):
            reads.append(i)
            return {"points": torch.full((2, 4), float(i))}

    cached = D.CachedFrames(Frames())
    assert len(cached) == 3
    first = cached[1]
    assert cached[1] is first and cached[2]["points"][0, 0] == 2.0 and reads == [1, 2]


def test_labelled_subsets_are_nested():
    s5, s20, s100 = (D.labelled_subset(40, f, seed=3) for f in (0.05, 0.2, 1.0))
    assert len(s5) == 2 and len(s20) == 8 and s100 == list(range(40))
    assert set(s5) <= set(s20) <= set(s100)
    with pytest.raises(ValueError, match="fraction"):
        D.labelled_subset(10, 0.0, 0)


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory):
    from _lidar_fakes import tiny_render_config

    from equivision.renderers.lidar import run_lidar_render
    from equivision.renderers.lidar_scene import LidarSceneSettings, LidarSensor

    out = tmp_path_factory.mktemp("det")
    sensor = LidarSensor(beams=8, azimuth_steps=128, max_range=20.0)
    cfg = tiny_render_config(out, sequences=2, sensor=sensor,
                             scene=LidarSceneSettings(frames=2, objects_min=3, objects_max=3, area_radius=7.0,
                                                      clear_radius=3.0))  # fmt: skip
    run_lidar_render(cfg, progress=False)
    return out


def test_detection_protocol_end_to_end(tiny_dataset, tmp_path, capsys):
    import argparse

    from equivision.ssl.lidar.commands import cmd_detect, register  # the `lidar` CLI group

    parser = argparse.ArgumentParser()
    register(parser)
    enc = json.dumps({"backbone": "test_resnet", "pillar_channels": 8, "neck_channels": 16, "out_stride": 2,
                      "x_range": [-8, 8], "y_range": [-8, 8], "pillar_size": 0.5})  # fmt: skip
    argv = ["detect", "--data", str(tiny_dataset), "--encoder", enc, "--fractions", "0.5,1", "--steps", "2",
            "--batch-size", "2", "--out", str(tmp_path / "det")]  # fmt: skip
    args = parser.parse_args(argv)
    assert args.func is cmd_detect and args.func(args) == 0
    res = json.loads((tmp_path / "det/results.json").read_text())
    assert res["classes"] == ["Bench", "Car"] and [r["fraction"] for r in res["runs"]] == [0.5, 1.0]
    assert [r["frames"] for r in res["runs"]] == [1, 2] and all(r["init"] == "scratch" for r in res["runs"])
    for r in res["runs"]:
        for v in r["mAP"]["bev"].values():
            assert v is None or math.isnan(v) or 0.0 <= v <= 1.0
    assert "| 50 % | 1 | scratch |" in (tmp_path / "det/results.md").read_text()
    ev = res["evaluation"]
    assert res["config"]["min_eval_points"] == 1 and ev["min_points"] == 1  # the default
    assert (
        0 <= ev["ignored_boxes"] <= ev["boxes"]
        and sum(ev["ignored_per_class"].values()) == ev["ignored_boxes"]
    )
    assert f"{ev['ignored_boxes']} of {ev['boxes']} ground truth boxes ignored" in capsys.readouterr().out


def test_min_eval_points_must_not_be_negative(capsys, tmp_path):
    import argparse

    from equivision.ssl.lidar.commands import register

    parser = argparse.ArgumentParser()
    register(parser)
    base = ["detect", "--data", str(tmp_path)]
    assert parser.parse_args([*base, "--min-eval-points", "0"]).min_eval_points == 0
    assert parser.parse_args(base).min_eval_points == 1
    for bad in ("-1", "two"):
        with pytest.raises(SystemExit) as exc:
            parser.parse_args([*base, "--min-eval-points", bad])
        assert exc.value.code == 2 and "expected an integer >= 0" in capsys.readouterr().err
    with pytest.raises(ValueError, match="min_eval_points must be >= 0"):
        D.run_detection_benchmark(D.DetectionConfig(data=str(tmp_path), min_eval_points=-1))


@pytest.fixture(scope="module")
def overfit_dataset(tmp_path_factory):
    """One sequence of 4 frames, 5-7 benches and cars within 12 m, 32 beams x 512 azimuth steps."""
    from _lidar_fakes import tiny_render_config

    from equivision.renderers.lidar import run_lidar_render
    from equivision.renderers.lidar_scene import LidarSceneSettings, LidarSensor

    out = tmp_path_factory.mktemp("overfit")
    scene = LidarSceneSettings(frames=4, objects_min=5, objects_max=7, area_radius=12.0, clear_radius=4.0)
    sensor = LidarSensor(beams=32, azimuth_steps=512, max_range=30.0)
    run_lidar_render(tiny_render_config(out, sequences=1, sensor=sensor, scene=scene), progress=False)
    return out


@pytest.mark.slow
def test_the_detector_overfits_its_training_frames(overfit_dataset, tmp_path):
    """A correct detector learns 4 frames by heart: high AP on those same frames (about 45 s).

    Before the box-axis encoding, the 3-layer head and the summed regression loss the same run
    reached BEV AP@0.7 0.23 and 3D AP@0.5 0.24 (BEV AP@0.5 0.90): positions were learnt, yaws not."""
    torch.set_num_threads(min(torch.get_num_threads(), 2))
    enc = {"backbone": "test_resnet", "pillar_channels": 16, "neck_channels": 32, "out_stride": 2,
           "x_range": [-16, 16], "y_range": [-16, 16], "pillar_size": 0.25}  # fmt: skip
    cfg = D.DetectionConfig(data=str(overfit_dataset), train_split="all", val_split="all", encoder=enc,
                            fractions=[1.0], steps=300, batch_size=4, lr=3e-3, head_channels=32,
                            head_layers=3, augment=False, device="cpu", out=str(tmp_path))  # fmt: skip
    res = D.run_detection_benchmark(cfg)
    (run,) = res["runs"]
    assert run["frames"] == 4 and res["data"]["val_frames"] == 4
    assert run["last_loss"] < 0.1 * run["first_loss"]
    assert run["mAP"]["bev"]["0.5"] > 0.7 and run["AP"]["bev"]["0.5"]["Car"] > 0.9
    assert run["mAP"]["bev"]["0.7"] > 0.5 and run["mAP"]["3d"]["0.5"] > 0.5

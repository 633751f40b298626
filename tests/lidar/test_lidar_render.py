"""The LiDAR renderer: ray-cast geometry, scene flow, the KITTI-style job (determinism, resume, shards)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from _lidar_fakes import TINY_SENSOR, box_plan, tiny_render_config, tree_bytes

from equivision.cli import main as cli_main
from equivision.data.kitti import find_frame_folders, read_frame, read_poses
from equivision.renderers.lidar import run_lidar_render
from equivision.renderers.lidar_scene import LidarCaster, LidarSensor, Motion, rot_z


@pytest.fixture(scope="module")
def mi():
    from equivision.renderers.variants import choose_variant

    choose_variant("scalar_rgb")
    import mitsuba

    return mitsuba


def box_surface_distance(p_local: np.ndarray, half: np.ndarray) -> np.ndarray:
    """Distance of points (box frame) to the surface of the box [-half, half]."""
    q = np.abs(p_local) - half
    outside = np.linalg.norm(np.maximum(q, 0), axis=1)
    inside = np.minimum(q.max(axis=1), 0)
    return np.abs(outside + inside)


@pytest.mark.parametrize("noise", [0.0, 0.03])
def test_scan_of_a_known_box_puts_points_on_its_faces(mi, noise):
    size = np.array([4.0, 2.0, 1.5])
    yaw = 0.4
    sensor = LidarSensor(**{**TINY_SENSOR.__dict__, "range_noise": noise, "azimuth_steps": 180})
    plan = box_plan(Motion(8.0, 3.0, yaw), tuple(size), sensor=sensor)
    scan = LidarCaster(mi, plan).scan(0, np.random.default_rng(0))
    obj = scan.instance == 1
    assert obj.sum() >= 10 and (scan.instance == 0).sum() > 100
    # the box centre in the sensor frame is (8, 3, 0.75 - 1.73), its yaw 0.4
    centre = np.array([8.0, 3.0, 0.75 - sensor.height])
    local = (scan.points[obj, :3] - centre) @ rot_z(yaw)
    tol = 1e-3 + 4 * noise
    assert box_surface_distance(local, size / 2).max() < tol
    ground = scan.points[scan.instance == 0]
    assert np.abs(ground[:, 2] + sensor.height).max() < 1e-3 + 4 * noise * 1.01
    np.testing.assert_allclose(scan.boxes, [[*centre, *size, yaw]], atol=1e-9)
    assert np.all((scan.points[:, 3] >= 0) & (scan.points[:, 3] <= 1))
    # ranges are within the sensor's reach and every ray direction is one of the sensor's
    assert np.linalg.norm(scan.points[:, :3], axis=1).max() <= sensor.max_range + 4 * noise


def test_scene_flow_equals_the_motion_of_the_object(mi):
    motion = Motion(6.0, -4.0, 0.3, speed=5.0, yaw_rate=0.8)
    plan = box_plan(motion)
    scan = LidarCaster(mi, plan).scan(0, np.random.default_rng(0))
    obj = scan.instance == 1
    assert obj.sum() >= 5
    # independent check: rigid motion of the box between t = 0 and t = 0.1 from its poses
    (x0, y0, a0), (x1, y1, a1) = motion.pose(0.0), motion.pose(0.1)
    assert a1 - a0 == pytest.approx(0.08) and math.hypot(x1 - x0, y1 - y0) == pytest.approx(0.5, rel=1e-3)
    h = plan.sensor.height
    c0, c1 = np.array([x0, y0, 0.75 - h]), np.array([x1, y1, 0.75 - h])
    p = scan.points[obj, :3].astype(np.float64)
    expected = (p - c0) @ rot_z(a0) @ rot_z(a1).T + c1
    np.testing.assert_allclose(p + scan.flow[obj], expected, atol=1e-4)
    assert np.abs(scan.flow[~obj]).max() == 0.0  # static ground, static sensor


def test_flow_of_static_things_seen_from_a_moving_sensor_is_the_ego_motion(mi):
    ego = Motion(0.0, 0.0, 0.0, speed=10.0, yaw_rate=0.5)
    plan = box_plan(Motion(8.0, 3.0, 0.0), ego=ego)
    scan = LidarCaster(mi, plan).scan(0, np.random.default_rng(0))
    (x1, y1, a1) = ego.pose(0.1)
    p = scan.points[:, :3].astype(np.float64)
    expected = (p - [x1, y1, 0.0]) @ rot_z(a1)  # world point (sensor 0 = world, shifted by its height)
    np.testing.assert_allclose(p + scan.flow, expected, atol=1e-4)


@pytest.fixture(scope="module")
def reference_render(tmp_path_factory, mi):
    out = tmp_path_factory.mktemp("lidar_ref")
    return out, run_lidar_render(tiny_render_config(out), progress=False)


def test_layout_manifest_and_reader(reference_render):
    out, summary = reference_render
    assert summary.complete and summary.rendered == 6 and not summary.failures
    m = json.loads((out / "manifest.json").read_text())
    assert m["format"] == "equivision-lidar/1" and m["classes"] == ["bench", "car"]
    assert m["kitti_types"] == ["Bench", "Car"] and m["num_frames"] == 6
    assert m["renderer"]["variants"] == ["scalar_rgb"]
    train, val = (out / "train.txt").read_text().split(), (out / "val.txt").read_text().split()
    assert sorted(train + val) == ["0000", "0001"] and len(val) == 1
    folders = find_frame_folders(out)
    assert [f.name for f in folders] == ["0000", "0001"]
    for d in folders:
        assert read_poses(d / "poses.txt").shape == (3, 4, 4)
        for i in range(3):
            fr = read_frame(d, f"{i:06d}")
            n = len(fr.points)
            assert n > 100 and fr.points.dtype == np.float32
            assert fr.flow.shape == (n, 3) and fr.instance.shape == (n,) and fr.semantic.shape == (n,)
            # semantic is 0 exactly on the ground and a class + 1 on objects
            assert np.array_equal(fr.semantic == 0, fr.instance == 0) and fr.semantic.max() <= 2
            assert set(fr.types) <= {"Bench", "Car"} and fr.boxes.shape == (len(fr.types), 7)


def test_same_bytes_with_shards_and_after_resume(reference_render, tmp_path):
    ref, _ = reference_render
    a = tmp_path / "shards"
    s1 = run_lidar_render(tiny_render_config(a), shard=1, num_shards=2, progress=False)
    assert not s1.complete and not (a / "train.txt").exists()
    s0 = run_lidar_render(tiny_render_config(a), shard=0, num_shards=2, progress=False)
    assert s0.complete
    assert tree_bytes(a) == tree_bytes(ref)
    # resume: remove one frame's .bin (the "done" marker) and a flow file; only that frame is redone
    (a / "sequences/0001/velodyne/000002.bin").unlink()
    (a / "sequences/0001/flow/000002.npy").unlink()
    s = run_lidar_render(tiny_render_config(a), shard=0, num_shards=2, progress=False)
    s = run_lidar_render(tiny_render_config(a), shard=1, num_shards=2, progress=False)
    assert s.rendered == 1 and s.skipped == 2
    assert tree_bytes(a) == tree_bytes(ref)


def test_a_failed_sequence_is_recorded_then_cleared_by_a_resume(reference_render, tmp_path):
    ref, _ = reference_render
    a = tmp_path / "fail"
    blocker = a / "sequences/0001/velodyne"  # a file where the folder goes: sequence 0001 cannot be written
    blocker.parent.mkdir(parents=True)
    blocker.write_text("x")
    s = run_lidar_render(tiny_render_config(a), progress=False)
    assert [f["sequence"] for f in s.failures] == ["0001"]
    assert s.failures[0]["error"].startswith("FileExistsError")
    assert s.complete and s.rendered == 3  # every sequence was tried; only 0000's 3 frames were written
    m = json.loads((a / "manifest.json").read_text())
    assert m["failures"] == s.failures and m["num_frames"] == 3
    assert (a / "train.txt").read_text().split() + (a / "val.txt").read_text().split() == ["0000"]
    blocker.unlink()
    s = run_lidar_render(tiny_render_config(a), progress=False)
    assert not s.failures and s.rendered == 3 and s.skipped == 3
    status = json.loads((a / ".equivision/shard-0-of-1.json").read_text())
    assert status["failures"] == [] and status["rendered"] == 6 and status["finished"]
    assert json.loads((a / "manifest.json").read_text())["num_frames"] == 6
    assert tree_bytes(a) == tree_bytes(ref)


def test_other_settings_in_the_same_folder_are_refused(reference_render):
    out, _ = reference_render
    with pytest.raises(ValueError, match="seed: 0 -> 1"):
        run_lidar_render(tiny_render_config(out, seed=1), progress=False)


def test_cli_render_lidar(tmp_path, capsys):
    rc = cli_main(["render", "lidar", "--out", str(tmp_path / "o"), "--sequences", "1", "--frames", "1",
                   "--beams", "4", "--azimuth-steps", "32", "--objects", "1-2", "--classes", "car",
                   "--objects-per-class", "1", "--variant", "scalar_rgb", "--no-progress"])  # fmt: skip
    assert rc == 0 and "rendered 1 LiDAR frames" in capsys.readouterr().out
    assert (tmp_path / "o/sequences/0000/velodyne/000000.bin").is_file()
    assert cli_main(["render", "lidar", "--out", str(tmp_path / "p"), "--objects", "5"]) == 2
    assert "--objects must be two numbers" in capsys.readouterr().err

"""KITTI-style files: .bin round trips, labels <-> LiDAR boxes, calibration, poses, bad files."""

from __future__ import annotations

import math

import numpy as np
import pytest

from equivision.data import kitti as K


def test_velodyne_bin_round_trips_bit_exactly(tmp_path):
    rng = np.random.default_rng(0)
    pts = rng.normal(size=(1000, 4)).astype(np.float32)
    path = K.write_velodyne(tmp_path / "velodyne" / "000000.bin", pts)
    assert path.stat().st_size == 1000 * 16
    assert np.fromfile(path, "<f4").reshape(-1, 4).tobytes() == pts.tobytes()  # the raw KITTI layout
    back = K.read_velodyne(path)
    assert back.dtype == np.float32 and np.array_equal(back, pts)


def test_bad_bin_size_and_bad_points_are_refused(tmp_path):
    p = tmp_path / "bad.bin"
    p.write_bytes(b"\0" * 20)
    with pytest.raises(K.KittiFormatError, match="bad.bin: 20 bytes"):
        K.read_velodyne(p)
    with pytest.raises(ValueError, match=r"\(N, 4\)"):
        K.write_velodyne(tmp_path / "x.bin", np.zeros((3, 3)))
    with pytest.raises(ValueError, match="NaN"):
        K.write_velodyne(tmp_path / "x.bin", np.full((1, 4), np.nan))


# a KITTI object calib file: P0-P3 of a real KITTI frame, our synthetic Tr_velo_to_cam
REAL_CALIB = "".join(
    line + "\n"
    for line in [
        "P0: 7.215377e+02 0.000000e+00 6.095593e+02 0.000000e+00 0.000000e+00 7.215377e+02 1.728540e+02"
        " 0.000000e+00 0.000000e+00 0.000000e+00 1.000000e+00 0.000000e+00",
        "P1: 7.215377e+02 0.000000e+00 6.095593e+02 -3.875744e+02 0.000000e+00 7.215377e+02 1.728540e+02"
        " 0.000000e+00 0.000000e+00 0.000000e+00 1.000000e+00 0.000000e+00",
        "P2: 7.215377e+02 0.000000e+00 6.095593e+02 4.485728e+01 0.000000e+00 7.215377e+02 1.728540e+02"
        " 2.163791e-01 0.000000e+00 0.000000e+00 1.000000e+00 2.745884e-03",
        "P3: 7.215377e+02 0.000000e+00 6.095593e+02 -3.395242e+02 0.000000e+00 7.215377e+02 1.728540e+02"
        " 2.199936e+00 0.000000e+00 0.000000e+00 1.000000e+00 2.729905e-03",
        "R0_rect: 1 0 0 0 1 0 0 0 1",
        "Tr_velo_to_cam: 0 -1 0 0 0 0 -1 -0.08 1 0 0 -0.27",
        "Tr_imu_to_velo: 1 0 0 0 0 1 0 0 0 0 1 0",
    ]
)


def test_real_kitti_label_line_gives_the_hand_computed_lidar_box(tmp_path):
    """cam = (-y_v, -z_v - 0.08, x_v - 0.27): the bottom centre (-0.65, 1.71, 46.70) is at velodyne
    (46.97, 0.65, -1.79), the box centre 1.65 / 2 higher; yaw = -rotation_y - pi/2."""
    d = tmp_path / "training"
    K.write_velodyne(d / "velodyne" / "000008.bin", np.zeros((2, 4), np.float32))
    (d / "calib").mkdir()
    (d / "calib" / "000008.txt").write_text(REAL_CALIB)
    (d / "label_2").mkdir()
    (d / "label_2" / "000008.txt").write_text(
        "Car 0.00 0 -1.58 587.01 173.33 614.12 200.12 1.65 1.67 3.64 -0.65 1.71 46.70 -1.59\n"
        "DontCare -1 -1 -10 503.89 169.71 590.61 190.13 -1 -1 -1 -1000 -1000 -1000 -10\n"
    )
    fr = K.read_frame(d, "000008")
    assert fr.types == ["Car"] and fr.flow is None and fr.points.shape == (2, 4)
    np.testing.assert_allclose(
        fr.boxes[0], [46.97, 0.65, -1.79 + 0.825, 3.64, 1.67, 1.65, 1.59 - math.pi / 2], atol=1e-9
    )
    assert K.find_frame_folders(tmp_path) == [d] and K.frame_ids(d) == ["000008"]


def test_boxes_survive_label_files_to_two_decimals(tmp_path):
    calib = K.synthetic_calib()
    boxes = np.array([[12.3, -4.56, -0.9, 4.2, 1.8, 1.5, 0.3], [-20.0, 7.0, -1.2, 0.9, 0.6, 1.1, -3.0]])
    objs = K.objects_from_boxes(boxes, ["Car", "Chair"], calib)
    K.write_label(tmp_path / "l.txt", objs)
    back = K.read_label(tmp_path / "l.txt")
    assert [o.type for o in back] == ["Car", "Chair"] and back[0].score is None
    got = K.boxes_from_objects(back, calib)
    np.testing.assert_allclose(got[:, :6], boxes[:, :6], atol=0.011)
    dyaw = K.wrap_angle(got[:, 6] - boxes[:, 6])
    assert np.all(np.abs(dyaw) < 0.006)
    # the box in front of the camera projects inside the image; the one behind gets -1s
    assert back[0].bbox[0] >= 0 and back[0].truncated < 1 and back[1].bbox == (-1, -1, -1, -1)


def test_calib_round_trip_and_odometry_style_tr(tmp_path):
    c = K.synthetic_calib()
    K.write_calib(tmp_path / "c.txt", c)
    back = K.read_calib(tmp_path / "c.txt")
    np.testing.assert_allclose(back.Tr_velo_to_cam, c.Tr_velo_to_cam)
    np.testing.assert_allclose(back.P2, c.P2)
    pts = np.array([[10.0, 2.0, -1.0], [3.0, -4.0, 0.5]])
    np.testing.assert_allclose(back.rect_to_velo(back.velo_to_rect(pts)), pts, atol=1e-12)
    (tmp_path / "calib.txt").write_text("P0: " + " ".join(["1"] * 12) + "\nTr: 0 -1 0 0 0 0 -1 0 1 0 0 0\n")
    odo = K.read_calib(tmp_path / "calib.txt")
    np.testing.assert_allclose(odo.velo_to_rect(np.array([[1.0, 2.0, 3.0]])), [[-2.0, -3.0, 1.0]])
    (tmp_path / "broken.txt").write_text("P2: 1 2 3\n")
    with pytest.raises(K.KittiFormatError, match="needs 12 values"):
        K.read_calib(tmp_path / "broken.txt")


def test_poses_round_trip_and_bad_label_names_file_and_line(tmp_path):
    poses = np.stack([np.eye(4)] * 3)
    poses[1, :3, 3] = (1.0, 2.0, 0.5)
    K.write_poses(tmp_path / "poses.txt", poses)
    np.testing.assert_allclose(K.read_poses(tmp_path / "poses.txt"), poses)
    (tmp_path / "bad.txt").write_text("Car 0 0 0 1 2 3 4 1 1 1 0 0 10 0\nCar 0 0 zero\n")
    with pytest.raises(K.KittiFormatError, match=r"bad.txt line 2: expected 15 or 16 fields"):
        K.read_label(tmp_path / "bad.txt")
    assert K.kitti_type("car") == "Car" and K.kitti_type("traffic cone") == "Traffic_cone"

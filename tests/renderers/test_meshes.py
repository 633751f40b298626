"""Mesh sources: procedural families, ShapeNet-like trees, folders of mesh files, broken files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import trimesh
from PIL import Image
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from equivision.renderers.meshes import (
    MESH_SOURCES,
    PROCEDURAL_CLASSES,
    FolderSource,
    MeshLoadError,
    ObjectMesh,
    ProceduralSource,
    ShapeNetSource,
    build_mesh_source,
    normalise,
    y_up_to_z_up,
)
from equivision.renderers.meshes.base import srgb_to_linear
from equivision.renderers.meshes.shapes import FAMILIES, prism, triangulate_polygon, tube
from equivision.utils.seeding import rng_for

# a tetrahedron with a different length on each axis: (x, y, z) -> (x, -z, y) is visible in it
TETRA_V = np.array([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 3.0]])
TETRA_F = np.array([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]])


def _check_contract(m: ObjectMesh) -> None:
    assert m.vertices.dtype == np.float64 and m.vertices.shape[1] == 3
    assert m.faces.dtype == np.int64 and m.faces.shape[1] == 3 and len(m.faces) > 0
    assert m.face_colors.dtype == np.float32 and m.face_colors.shape == m.faces.shape
    assert np.isfinite(m.vertices).all()
    assert m.faces.min() >= 0 and m.faces.max() < len(m.vertices)
    assert m.face_colors.min() >= 0.0 and m.face_colors.max() <= 1.0
    lo, hi = m.vertices.min(axis=0), m.vertices.max(axis=0)
    np.testing.assert_allclose((lo + hi) / 2, 0.0, atol=1e-9)
    assert abs(np.linalg.norm(hi - lo) - 1.0) < 1e-9


def _sorted_rows(a: np.ndarray) -> np.ndarray:
    """The distinct vertex positions, sorted (STL stores each triangle's corners separately)."""
    return np.unique(np.round(np.asarray(a, dtype=np.float64), 9), axis=0)


def _components(m: ObjectMesh) -> int:
    """Number of separate parts (faces connected through shared vertex indices)."""
    nf, nv = len(m.faces), len(m.vertices)
    rows = np.repeat(np.arange(nf), 3)
    graph = coo_matrix((np.ones(3 * nf), (rows, m.faces.ravel() + nf)), shape=(nf + nv, nf + nv))
    _, labels = connected_components(graph, directed=False)
    return len(np.unique(labels[:nf]))


# ------------------------------------------------------------------------------------ basics


def test_normalise_by_hand():
    v = normalise(np.array([[0.0, 0.0, 0.0], [3.0, 4.0, 0.0], [1.0, 1.0, 0.0]]))
    # bbox centre (1.5, 2, 0), diagonal 5
    np.testing.assert_allclose(v, [[-0.3, -0.4, 0.0], [0.3, 0.4, 0.0], [-0.1, -0.2, 0.0]])
    for bad, message in (
        (np.zeros((3, 3)), "zero extent"),
        (np.array([[np.nan, 0, 0], [1, 1, 1]]), "NaN or infinite"),
        (np.zeros((0, 3)), r"non-empty \(V, 3\) vertex array, got shape \(0, 3\)"),
        (np.zeros((4, 2)), r"non-empty \(V, 3\) vertex array, got shape \(4, 2\)"),
    ):
        with pytest.raises(ValueError, match=message):
            normalise(bad)


def test_y_up_to_z_up_is_blenders_rotation():
    np.testing.assert_array_equal(y_up_to_z_up(np.array([[1.0, 2.0, 3.0]])), [[1.0, -3.0, 2.0]])


def test_srgb_to_linear_known_values():
    np.testing.assert_allclose(
        srgb_to_linear([0.0, 0.04045, 0.5, 1.0]), [0.0, 0.04045 / 12.92, 0.214041, 1.0], atol=1e-6
    )


def test_triangulate_and_prism_of_a_concave_polygon():
    # an L shape of area 3 (non-convex): ear clipping must cover it exactly once
    poly = np.array([[0, 0], [2, 0], [2, 1], [1, 1], [1, 2], [0, 2]], dtype=float)
    clockwise = poly[::-1]  # handled too: the triangles come out counter-clockwise
    a = clockwise[triangulate_polygon(clockwise)]
    areas = 0.5 * (
        (a[:, 1, 0] - a[:, 0, 0]) * (a[:, 2, 1] - a[:, 0, 1])
        - (a[:, 1, 1] - a[:, 0, 1]) * (a[:, 2, 0] - a[:, 0, 0])
    )
    assert len(a) == 4 and np.all(areas > 0) and np.isclose(areas.sum(), 3.0)
    for plane in ("xy", "xz", "yz"):
        m = prism(poly, 0.0, 0.5, plane)
        assert np.isclose(m.volume, 1.5)  # positive: outward winding in every plane


def test_tube_is_closed_and_outward():
    path = np.column_stack([np.cos(np.linspace(0, 3, 20)), np.sin(np.linspace(0, 3, 20)), np.zeros(20)])
    m = tube(path, 0.1, sections=16)
    # a bent tube of length ~3: volume about pi r^2 L, positive when the winding is outward
    assert 0.8 * np.pi * 0.01 * 3 < m.volume < 1.05 * np.pi * 0.01 * 3


# ------------------------------------------------------------------------------- procedural


def test_procedural_classes_listed_and_registered():
    assert len(PROCEDURAL_CLASSES) >= 12
    assert list(PROCEDURAL_CLASSES) == sorted(PROCEDURAL_CLASSES)
    for c in (
        "chair",
        "table",
        "mug",
        "bottle",
        "lamp",
        "airplane",
        "car",
        "sofa",
        "bench",
        "vase",
        "bowl",
        "guitar",
    ):
        assert c in PROCEDURAL_CLASSES


@pytest.mark.parametrize("class_name", PROCEDURAL_CLASSES)
def test_every_class_builds_normalised_meshes(class_name):
    src = ProceduralSource(objects_per_class=8, seed=3)
    for _, object_id in [o for o in src.objects() if o[0] == class_name]:
        m = src.load(class_name, object_id)
        _check_contract(m)
        m.validate(tol=1e-9)
        assert (m.class_name, m.object_id) == (class_name, object_id)
        assert 12 <= len(m.faces) <= 20_000


@pytest.mark.parametrize("class_name", PROCEDURAL_CLASSES)
def test_every_part_is_wound_outward(class_name):
    for index in range(6):
        parts = FAMILIES.get(class_name)(rng_for("winding", class_name, index))
        volumes = [p.volume for p in parts.meshes]
        assert min(volumes) > 0, f"{class_name} {index}: a part is inside out ({min(volumes)})"


def test_same_seed_class_index_gives_identical_arrays_in_any_order():
    a = ProceduralSource(objects_per_class=5, seed=7)
    first = a.load("chair", "chair_0004")
    b = ProceduralSource(objects_per_class=5, seed=7, classes=["chair", "mug"])
    for _, oid in b.objects():  # generate others first: the object must not depend on order
        b.load(_, oid)
    second = b.load("chair", "chair_0004")
    for x, y in (
        (first.vertices, second.vertices),
        (first.faces, second.faces),
        (first.face_colors, second.face_colors),
    ):
        np.testing.assert_array_equal(x, y)


def test_different_index_or_seed_gives_different_objects():
    src, other = ProceduralSource(seed=0), ProceduralSource(seed=1)
    for c in PROCEDURAL_CLASSES:
        a, b, s = src.load(c, f"{c}_0000"), src.load(c, f"{c}_0001"), other.load(c, f"{c}_0000")
        for x in (b, s):
            assert a.vertices.shape != x.vertices.shape or not np.allclose(a.vertices, x.vertices)


@pytest.mark.parametrize("class_name", PROCEDURAL_CLASSES)
def test_objects_of_a_class_vary_in_proportions(class_name):
    src = ProceduralSource(objects_per_class=12, seed=0, classes=[class_name])
    extents = []
    for _, oid in src.objects():
        v = src.load(class_name, oid).vertices
        extents.append(np.sort(v.max(axis=0) - v.min(axis=0)))
    ratios = np.array(extents)[:, :2] / np.array(extents)[:, 2:]
    assert np.ptp(ratios, axis=0).max() > 0.04, f"{class_name}: all objects have the same proportions"


@pytest.mark.parametrize(
    "class_name",
    ["chair", "table", "sofa", "bench", "bed", "bookshelf", "airplane", "rocket", "lamp", "guitar"],
)
def test_objects_of_a_class_vary_in_part_counts(class_name):
    src = ProceduralSource(objects_per_class=16, seed=0, classes=[class_name])
    counts = {_components(src.load(class_name, oid)) for _, oid in src.objects()}
    assert len(counts) >= 3, f"{class_name}: part counts {counts}"


def test_classes_sorted_and_objects_deterministic():
    src = ProceduralSource(objects_per_class=3, seed=0, classes=["mug", "chair", "vase"])
    assert src.classes() == ["chair", "mug", "vase"]
    objs = src.objects()
    assert objs == ProceduralSource(objects_per_class=3, seed=0, classes=["vase", "mug", "chair"]).objects()
    assert objs[:4] == [
        ("chair", "chair_0000"),
        ("chair", "chair_0001"),
        ("chair", "chair_0002"),
        ("mug", "mug_0000"),
    ]
    assert len(objs) == 9 and src.label("mug") == 1
    d = src.describe()
    assert json.loads(json.dumps(d)) == d and d["classes"] == ["chair", "mug", "vase"] and d["seed"] == 0


def test_procedural_bad_arguments():
    for kwargs, message in (
        ({"objects_per_class": 0}, "objects_per_class must be a positive integer, got 0"),
        ({"classes": ["unicorn"]}, r"unknown or no procedural classes \['unicorn'\]; known: airplane"),
        ({"classes": []}, r"unknown or no procedural classes \[\]"),
        ({"classes": ["mug", "mug"]}, r"procedural classes listed twice: \['mug', 'mug'\]"),
    ):
        with pytest.raises(ValueError, match=message):
            ProceduralSource(**kwargs)
    src = ProceduralSource(objects_per_class=2, classes=["mug"])
    for cls, oid in (("chair", "chair_0000"), ("mug", "mug_1"), ("mug", "chair_0000"), ("mug", "mug_00x1")):
        with pytest.raises(MeshLoadError, match=oid):
            src.load(cls, oid)


def test_registry_builds_sources_by_name(tmp_path):
    assert MESH_SOURCES.names() == ["folder", "procedural", "shapenet"]
    src = build_mesh_source("procedural", objects_per_class=2, seed=5, classes=["bowl"])
    assert isinstance(src, ProceduralSource) and src.objects() == [
        ("bowl", "bowl_0000"),
        ("bowl", "bowl_0001"),
    ]
    with pytest.raises(KeyError, match="known: folder, procedural, shapenet"):
        build_mesh_source("blender")
    with pytest.raises(ValueError, match="objects_per_clas"):
        build_mesh_source("procedural", objects_per_clas=3)
    with pytest.raises(FileNotFoundError, match="nowhere"):
        build_mesh_source("folder", root=tmp_path / "nowhere")


# ----------------------------------------------------------------------------------- folder


def _tetra() -> trimesh.Trimesh:
    return trimesh.Trimesh(TETRA_V, TETRA_F, process=False)


def test_folder_source_round_trip_and_up_axis(tmp_path):
    (tmp_path / "shapes").mkdir()
    (tmp_path / "empty").mkdir()  # no mesh file: not a class
    _tetra().export(tmp_path / "shapes" / "tet_obj.obj")
    _tetra().export(tmp_path / "shapes" / "tet_stl.stl")
    (tmp_path / "shapes" / "notes.txt").write_text("not a mesh")
    src = FolderSource(tmp_path)
    assert src.classes() == ["shapes"]
    assert src.objects() == [("shapes", "tet_obj"), ("shapes", "tet_stl")]
    as_z = normalise(TETRA_V)
    as_y = normalise(TETRA_V[:, [0, 2, 1]] * [1, -1, 1])  # (x, y, z) -> (x, -z, y), by hand
    obj, stl = src.load("shapes", "tet_obj"), src.load("shapes", "tet_stl")
    _check_contract(obj)
    _check_contract(stl)
    np.testing.assert_allclose(_sorted_rows(obj.vertices), _sorted_rows(as_y), atol=1e-7)  # OBJ: Y-up
    np.testing.assert_allclose(_sorted_rows(stl.vertices), _sorted_rows(as_z), atol=1e-7)  # STL: Z-up
    np.testing.assert_allclose(obj.face_colors, 0.7)  # no material: grey
    forced = FolderSource(tmp_path, up="z").load("shapes", "tet_obj")
    np.testing.assert_allclose(_sorted_rows(forced.vertices), _sorted_rows(as_z), atol=1e-7)
    forced = FolderSource(tmp_path, up="y").load("shapes", "tet_stl")
    np.testing.assert_allclose(_sorted_rows(forced.vertices), _sorted_rows(as_y), atol=1e-7)
    assert src.describe()["num_objects"] == 2 and src.describe()["up"] == "auto"
    with pytest.raises(MeshLoadError, match="missing"):
        src.load("shapes", "missing")
    with pytest.raises(ValueError, match="up must be 'auto', 'y' or 'z', got 'x'"):
        FolderSource(tmp_path, up="x")


def test_folder_source_colours_and_multi_part_scenes(tmp_path):
    (tmp_path / "c").mkdir()
    box = trimesh.creation.box((1.0, 2.0, 3.0))
    box.visual.face_colors = [128, 0, 255, 255]  # sRGB bytes -> linear
    box.export(tmp_path / "c" / "painted.ply")
    red, blue = trimesh.creation.box((1, 1, 1)), trimesh.creation.box((1, 1, 1))
    red.visual.face_colors, blue.visual.face_colors = [255, 0, 0, 255], [0, 0, 255, 255]
    scene = trimesh.Scene()
    scene.add_geometry(red, node_name="red", transform=trimesh.transformations.translation_matrix((0, 3, 0)))
    scene.add_geometry(blue, node_name="blue")
    scene.export(tmp_path / "c" / "two.glb")
    src = FolderSource(tmp_path)
    painted = src.load("c", "painted")
    np.testing.assert_allclose(painted.face_colors, np.tile([0.2158605, 0.0, 1.0], (12, 1)), atol=1e-5)
    two = src.load("c", "two")
    _check_contract(two)
    assert len(two.faces) == 24
    # boxes of side 1 stacked 3 apart along glTF's Y (up) -> extents (1, 1, 4) after Y-up to Z-up
    np.testing.assert_allclose(
        two.vertices.max(0) - two.vertices.min(0), np.array([1, 1, 4]) / np.sqrt(18), atol=1e-6
    )
    top = two.faces[np.argmax(two.vertices[two.faces].mean(axis=1)[:, 2])]
    assert np.allclose(
        two.face_colors[(two.faces == top).all(axis=1)], [1, 0, 0]
    )  # the moved box is the red one
    assert {tuple(c) for c in two.face_colors.tolist()} == {(1.0, 0.0, 0.0), (0.0, 0.0, 1.0)}


def test_folder_source_duplicate_object_ids(tmp_path):
    (tmp_path / "c").mkdir()
    _tetra().export(tmp_path / "c" / "a.obj")
    _tetra().export(tmp_path / "c" / "a.stl")
    with pytest.raises(ValueError, match="a.obj"):
        FolderSource(tmp_path)


# --------------------------------------------------------------------------------- shapenet


MTL = "newmtl paint\nKd 0.8 0.1 0.1\nnewmtl tex\nKd 0.5 0.5 0.5\nmap_Kd ../images/texture0.png\n"
OBJ_HEAD = (
    "mtllib model_normalized.mtl\n"
    + "".join(f"v {x} {y} {z}\n" for x, y, z in TETRA_V)
    + "vt 0 0\nvt 1 0\nvt 0 1\n"
)


def _shapenet_model(root: Path, synset: str, model: str, body: str, texture: bool = False) -> None:
    d = root / synset / model / "models"
    d.mkdir(parents=True)
    (d / "model_normalized.mtl").write_text(MTL)
    (d / "model_normalized.obj").write_text(OBJ_HEAD + body)
    if texture:
        (root / synset / model / "images").mkdir()
        Image.fromarray(np.full((4, 4, 3), (20, 200, 30), np.uint8)).save(
            root / synset / model / "images" / "texture0.png"
        )


def test_shapenet_tree_classes_colours_and_up_axis(tmp_path):
    red = "usemtl paint\nf 1 3 2\nf 1 2 4\nf 1 4 3\nf 2 3 4\n"
    mixed = "usemtl paint\nf 1 3 2\nf 1 2 4\nusemtl tex\nf 1/1 4/2 3/3\nf 2/1 3/2 4/3\n"
    _shapenet_model(tmp_path, "04379243", "m2", red)  # created first, sorts last
    _shapenet_model(tmp_path, "02691156", "m1", mixed, texture=True)
    _shapenet_model(tmp_path, "02691156", "m0", red)
    (tmp_path / "02691156" / "broken" / "models").mkdir(parents=True)  # listed, fails on load
    (tmp_path / "taxonomy.json").write_text(
        json.dumps([{"synsetId": "02691156", "name": "airplane", "children": []}])
    )
    src = ShapeNetSource(tmp_path)
    assert src.classes() == ["02691156", "04379243"] and src.label("04379243") == 1
    assert src.objects() == [
        ("02691156", "broken"),
        ("02691156", "m0"),
        ("02691156", "m1"),
        ("04379243", "m2"),
    ]
    d = src.describe()
    assert (
        json.loads(json.dumps(d)) == d
        and d["class_names"] == {"02691156": "airplane"}
        and d["num_objects"] == 4
    )
    m = src.load("04379243", "m2")
    _check_contract(m)
    np.testing.assert_allclose(
        _sorted_rows(m.vertices), _sorted_rows(normalise(y_up_to_z_up(TETRA_V))), atol=1e-7
    )
    np.testing.assert_allclose(
        m.face_colors, np.tile([0.8, 0.1, 0.1], (4, 1)), atol=3e-3
    )  # MTL Kd, as linear
    mixed_mesh = src.load("02691156", "m1")
    colours = {tuple(np.round(c, 2)) for c in mixed_mesh.face_colors.tolist()}
    green = tuple(np.round(srgb_to_linear(np.array([20, 200, 30]) / 255), 2))
    assert colours == {(0.8, 0.1, 0.1), green}  # the texture replaces Kd 0.5, as in Blender's importer
    no_tex = ShapeNetSource(tmp_path, texture_colors="none").load("02691156", "m1")
    assert {tuple(np.round(c, 2)) for c in no_tex.face_colors.tolist()} == {(0.8, 0.1, 0.1), (0.5, 0.5, 0.5)}
    with pytest.raises(MeshLoadError, match=r"broken.*model_normalized\.obj.*no such file"):
        src.load("02691156", "broken")


def test_shapenet_root_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"ShapeNet root .*absent is not a folder"):
        ShapeNetSource(tmp_path / "absent")
    with pytest.raises(ValueError, match="no synset"):
        ShapeNetSource(tmp_path)


# ------------------------------------------------------------------------------ broken files


@pytest.mark.parametrize(
    "name, content, reason",
    [
        ("garbage.stl", b"\x00\x01 this is not an stl file at all", "cannot be read|no triangles"),
        ("lines.obj", b"v 0 0 0\nv 1 0 0\nv 0 1 0\nl 1 2\n", "no triangles"),
        ("empty.ply", b"", "cannot be read|no triangles"),
        ("nan.obj", b"v nan 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n", "NaN"),
        ("point.obj", b"v 1 1 1\nv 1 1 1\nv 1 1 1\nf 1 2 3\n", "zero extent"),
        ("text.off", b"hello\n", "cannot be read|no triangles"),
    ],
)
def test_broken_files_raise_mesh_load_error_naming_the_file(tmp_path, name, content, reason):
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / name).write_bytes(content)
    src = FolderSource(tmp_path)
    with pytest.raises(MeshLoadError, match=reason) as info:
        src.load("c", Path(name).stem)
    assert name in str(info.value)

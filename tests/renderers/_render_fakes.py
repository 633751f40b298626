"""Tiny render configurations and helpers shared by the renderer tests."""

from equivision.renderers.iebench import RenderConfig
from equivision.renderers.scene import SceneSettings

TINY_CLASSES = ["chair", "mug", "table"]


def tiny_config(out, **kw) -> RenderConfig:
    """A 16 px, 2 spp render of 3 classes x 2 objects x 3 views with the always-available scalar variant."""
    source = kw.get("source", "procedural")
    opts = dict(objects_per_class=2, classes=TINY_CLASSES) if source == "procedural" else {}
    opts.update(kw.pop("source_options", {}))
    scene = kw.pop("scene", SceneSettings(resolution=16, spp=2, sun="directional"))
    return RenderConfig(
        out=str(out),
        source=kw.pop("source", "procedural"),
        source_options=opts,
        views_per_object=kw.pop("views_per_object", 3),
        variant=kw.pop("variant", "scalar_rgb"),
        denoise=kw.pop("denoise", "off"),
        scene=scene,
        **kw,
    )


def tree_bytes(root) -> dict:
    """Every dataset file under root (relative path -> bytes), manifest and state excluded."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if p.is_file() and not rel.startswith(".equivision") and rel != "manifest.json":
            out[rel] = p.read_bytes()
    return out

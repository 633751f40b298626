"""``equivision bench train`` / ``bench loader``: backbone-image counting, the report fields and their
arithmetic, the loader on a tiny rendered dataset, and CLI errors. Tiny sizes (16 px, batch 4)."""

from __future__ import annotations

import dataclasses
import json
import math
import statistics
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from torch import nn

from equivision.backbones import build_backbone
from equivision.backbones.factory import Backbone
from equivision.benchmarks.step_timing import (
    StepTimes,
    backbone_images,
    record_backbone_calls,
    resolve_runtime,
    synthetic_batch,
    time_steps,
)
from equivision.benchmarks.train_speed import bench_loader, bench_train, loader_report
from equivision.cli import main
from equivision.data.schema import LATENT_RANGES, latent_names
from equivision.ssl.registry import METHODS, Method, build_method

CPU = resolve_runtime("cpu", "fp32", "false")
TINY_SIE = {"mlp": "32-32", "equi_dims": 256}  # resnet18: 512-d, split 256/256, 16-16 projectors


class TinyBackbone(Backbone):
    """3x3 conv + global pooling: a Backbone that costs nothing."""

    def __init__(self) -> None:
        super().__init__("tiny", 8, spatial=False)
        self.conv = nn.Conv2d(3, 8, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x).mean(dim=(2, 3))


@dataclass
class _NoConfig:
    pass


class AllViewsConcat(Method):
    """Passes all k views through the backbone in one call (k*B images)."""

    Config = _NoConfig

    def __init__(self, backbone: Backbone) -> None:
        super().__init__(backbone, None)
        self.head = nn.Linear(backbone.feat_dim, 4)
        self.forward_calls = 0

    def forward(self, batch):
        self.forward_calls += 1
        imgs = batch["images"]
        y = self.backbone(imgs.flatten(0, 1))
        return {"loss": self.head(y).pow(2).mean()}


class AllViewsOneByOne(AllViewsConcat):
    """Calls the backbone once per view (k calls of B images)."""

    def forward(self, batch):
        self.forward_calls += 1
        imgs = batch["images"]
        loss = sum(self.head(self.backbone(imgs[:, v])).pow(2).mean() for v in range(imgs.shape[1]))
        return {"loss": loss}


def test_synthetic_batch_shapes_ranges_and_seed():
    b = synthetic_batch(5, 3, 16, CPU, latent_size=10, seed=7)
    assert b["images"].shape == (5, 3, 3, 16, 16)
    assert b["latents"].shape == (5, 3, 10) and b["latents"].dtype == torch.float32
    assert b["label"].shape == (5,) and b["label"].dtype == torch.int64
    for j, name in enumerate(latent_names(10)):
        lo, hi = LATENT_RANGES[name]
        col = b["latents"][..., j]
        assert lo <= col.min() and col.max() <= hi, name
    again = synthetic_batch(5, 3, 16, CPU, latent_size=10, seed=7)
    assert torch.equal(b["images"], again["images"]) and torch.equal(b["latents"], again["latents"])
    with pytest.raises(ValueError, match="batch_size >= 2"):
        synthetic_batch(1, 2, 16, CPU)


def test_channels_last_layout_of_each_view():
    rt = resolve_runtime("cpu", "fp32", "true")
    assert rt.channels_last and not rt.bf16
    b = synthetic_batch(4, 2, 8, rt)
    view = b["images"][:, 1]
    assert view.stride()[1] == 1  # channels innermost, as the trainer lays a batch out


def test_resolve_runtime_rejects_bad_values():
    with pytest.raises(ValueError, match="precision"):
        resolve_runtime("cpu", "fp16", "auto")
    with pytest.raises(ValueError, match="device"):
        resolve_runtime("tpu", "auto", "auto")
    assert resolve_runtime("cpu", "bf16", "auto").bf16


def test_sie_counts_two_views_per_sample_whatever_k():
    torch.manual_seed(0)
    sie = build_method("sie", build_backbone("resnet18", low_res_stem=True), TINY_SIE).train()
    for k in (2, 3):
        calls = record_backbone_calls(sie, synthetic_batch(4, k, 16, CPU), CPU)
        assert [c.shape for c in calls] == [(4, 3, 16, 16), (4, 3, 16, 16)]
        assert backbone_images(calls) == 8
    assert all(p.grad is None for p in sie.parameters())  # the recording step leaves no gradients


@pytest.mark.parametrize(
    ("cls", "shapes"),
    [(AllViewsConcat, [(12, 3, 8, 8)]), (AllViewsOneByOne, [(4, 3, 8, 8)] * 3)],
)
def test_k_view_methods_are_counted(cls, shapes):
    m = cls(TinyBackbone()).train()
    calls = record_backbone_calls(m, synthetic_batch(4, 3, 8, CPU), CPU)
    assert [c.shape for c in calls] == shapes
    assert backbone_images(calls) == 12


def test_time_steps_runs_baseline_on_the_recorded_calls_only():
    m = AllViewsOneByOne(TinyBackbone()).train()
    seen: list[tuple[int, ...]] = []
    m.backbone.register_forward_pre_hook(lambda mod, args: seen.append(tuple(args[0].shape)))
    times, calls = time_steps(m, synthetic_batch(4, 3, 8, CPU), CPU, steps=3, warmup=2)
    assert len(times.baseline) == len(times.full) == 3
    assert all(len(r) == 3 and all(t >= 0 for t in r) for r in times.baseline + times.full)
    assert m.forward_calls == 1 + 2 + 3  # recording step + warm-up + timed full steps only
    # every step of either kind (1 recording + 5 full + 5 baseline) made the same 3 backbone calls
    assert seen == [(4, 3, 8, 8)] * 3 * (1 + 5 + 5)
    with pytest.raises(ValueError, match="steps"):
        time_steps(m, synthetic_batch(4, 3, 8, CPU), CPU, steps=0)


class EntersBelowForward(AllViewsConcat):
    """Uses the backbone's conv directly (like ``backbone.model.forward_features``), never its forward."""

    def forward(self, batch):
        self.forward_calls += 1
        x, y = self.two_views(batch)
        feats = [self.backbone.conv(v).mean(dim=(2, 3)) for v in (x, y)]
        return {"loss": sum(self.head(f).pow(2).mean() for f in feats)}


def test_backbone_entered_below_forward_is_counted_at_its_first_module():
    m = EntersBelowForward(TinyBackbone()).train()
    calls = record_backbone_calls(m, synthetic_batch(4, 3, 8, CPU), CPU)
    assert [(c.shape, c.entry) for c in calls] == [((4, 3, 8, 8), "conv")] * 2


class WithAfterStep(AllViewsConcat):
    def __init__(self, backbone: Backbone) -> None:
        super().__init__(backbone)
        self.after: list[tuple[int, int]] = []

    def on_after_step(self, step: int, total_steps: int) -> None:
        self.after.append((step, total_steps))


def test_full_step_calls_the_methods_after_step_hook_like_the_trainer():
    m = WithAfterStep(TinyBackbone()).train()
    time_steps(m, synthetic_batch(4, 2, 8, CPU), CPU, steps=3, warmup=1)
    assert m.after == [(1, 4), (2, 4), (3, 4), (4, 4)]  # once per full step, never in the baseline


def test_time_steps_updates_the_head_only_in_full_steps():
    m = AllViewsConcat(TinyBackbone()).train()
    head0 = m.head.weight.detach().clone()
    conv0 = m.backbone.conv.weight.detach().clone()
    time_steps(m, synthetic_batch(4, 2, 8, CPU), CPU, steps=1, warmup=0)
    assert not torch.equal(m.head.weight, head0) and not torch.equal(m.backbone.conv.weight, conv0)


def test_method_that_never_calls_its_backbone_is_an_error():
    class NoBackbone(AllViewsConcat):
        def forward(self, batch):
            return {"loss": self.head.weight.sum()}

    with pytest.raises(ValueError, match="never called method.backbone"):
        record_backbone_calls(NoBackbone(TinyBackbone()), synthetic_batch(4, 2, 8, CPU), CPU)


def test_step_medians_by_hand():
    t = StepTimes(baseline=[[1, 2, 3], [2, 3, 4], [9, 9, 9]], full=[[1, 1, 1], [3, 1, 2]])
    med = t.medians()
    assert med["baseline"] == {"forward": 2, "backward": 3, "optimizer": 4, "total": 9}
    assert med["full"] == {"forward": 2, "backward": 1, "optimizer": 1.5, "total": 4.5}


def test_paired_overhead_by_hand_is_robust_to_drift():
    # the machine runs at half speed for the last two pairs; the full step is 10 % slower throughout
    t = StepTimes(
        baseline=[[1, 0, 0], [1, 0, 0], [2, 0, 0], [2, 0, 0]],
        full=[[1.1, 0, 0], [1.1, 0, 0], [2.2, 0, 0], [2.2, 0, 0]],
    )
    assert math.isclose(t.paired_overhead(), 0.1)
    # ratios 1.5, 1.0, 1.2 -> median 1.2
    t = StepTimes(baseline=[[2, 0, 0], [4, 0, 0], [5, 0, 0]], full=[[2, 1, 0], [2, 2, 0], [3, 2, 1]])
    assert math.isclose(t.paired_overhead(), 0.2)
    with pytest.raises(ValueError, match="as many full as baseline"):
        StepTimes(baseline=[[1, 1, 1]], full=[]).paired_overhead()


def _check_train_report(r: dict, images_per_step: int, backbone_images_per_step: int, steps: int) -> None:
    for key in ("seconds", "img_per_s", "ssl_overhead", "ssl_overhead_pass", "environment", "backbone_calls"):
        assert key in r
    assert r["images_per_step"] == images_per_step
    assert r["backbone_images_per_step"] == backbone_images_per_step
    assert len(r["step_seconds"]["baseline"]) == len(r["step_seconds"]["full"]) == steps
    t_b, t_f = r["seconds"]["baseline"]["total"], r["seconds"]["full"]["total"]
    assert math.isclose(r["ssl_overhead_of_medians"], t_f / t_b - 1)
    pairs = sorted(
        f / b for f, b in zip(r["step_seconds"]["full"], r["step_seconds"]["baseline"], strict=True)
    )
    assert math.isclose(r["ssl_overhead"], statistics.median(pairs) - 1)
    assert r["ssl_overhead_pass"] == (r["ssl_overhead"] <= 0.15)
    assert math.isclose(r["img_per_s"]["train"], images_per_step / t_f)
    assert math.isclose(r["img_per_s"]["baseline_backbone"], backbone_images_per_step / t_b)
    env = r["environment"]
    assert env["torch"] == torch.__version__ and env["device"] == "cpu" and env["torch_threads"] >= 1


@pytest.mark.parametrize(
    "argv", [["bench", "--help"], ["bench", "train", "--help"], ["bench", "loader", "--help"]]
)
def test_help_texts_render(argv, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "train" in out and "loader" in out if argv == ["bench", "--help"] else "--out" in out


def test_bench_train_cli_writes_the_report(tmp_path, capsys):
    out = tmp_path / "train.json"
    argv = ["bench", "train", "--method", "sie", "--image-size", "16", "--low-res-stem", "--batch-size", "4"]
    argv += ["--views", "3", "--steps", "2", "--warmup", "1", "--device", "cpu", "--out", str(out)]
    argv += [f"--set=mlp={TINY_SIE['mlp']}", "--set", "equi_dims=128"]
    assert main(argv) == 0
    r = json.loads(out.read_text())
    # 4 objects x 3 loaded views, of which SIE passes 2 views through the backbone
    _check_train_report(r, images_per_step=12, backbone_images_per_step=8, steps=2)
    assert r["method"] == "sie" and r["overrides"] == ["mlp=32-32", "equi_dims=128"]
    assert r["runtime"] == {"device": "cpu", "precision": "fp32", "channels_last": False}
    par = r["parameters"]
    assert par["frozen"] == 0 and par["total"] == par["backbone"] + par["ssl"]
    # ssl parameters of SIE with a 384/128 split and 32-32 scaled projectors: 384->24->24, 128->8->8, 8x8x4
    ssl = (384 * 24 + 24 + 2 * 24 + 24 * 24) + (128 * 8 + 8 + 2 * 8 + 8 * 8) + 8 * 8 * 4
    assert r["parameters"]["ssl"] == ssl
    assert "ssl_overhead" in capsys.readouterr().out


# views each registered method passes through its online backbone (others: checked to be in 1..k)
BACKBONE_VIEWS = {"sie": 2, "sie_rotcolor": 2, "vicreg": 2, "simclr": 2, "seqjepa": 3}


def _tiny_method_setup(name: str) -> tuple[dict, int]:
    """Small config overrides and the views a batch needs, read from the method's Config fields."""
    fields = {f.name: f.default for f in dataclasses.fields(METHODS.get(name).Config)}
    small = {"mlp": "32-32", "pred_hidden": 32, "act_dim": 8, "map_size": 2}
    return {k: v for k, v in small.items() if k in fields}, int(fields.get("seq_len", 1)) + 1


# image methods (essl3d is a LiDAR method: its input is point clouds, benchmarked by its own loop)
IMAGE_METHODS = [n for n in METHODS.names() if n != "essl3d"]


@pytest.mark.parametrize("name", IMAGE_METHODS)
def test_bench_train_runs_for_every_registered_method(name):
    overrides, views = _tiny_method_setup(name)
    torch.manual_seed(0)
    model = build_method(name, build_backbone("resnet18", low_res_stem=True), overrides).train()
    r = bench_train(
        name, image_size=16, batch_size=4, views=views, steps=1, warmup=0, device="cpu", model=model
    )
    seen = r["backbone_images_per_step"]
    assert seen == 4 * BACKBONE_VIEWS[name] if name in BACKBONE_VIEWS else 4 <= seen <= 4 * views
    _check_train_report(r, images_per_step=4 * views, backbone_images_per_step=seen, steps=1)
    par = r["parameters"]
    assert par["total"] == par["backbone"] + par["ssl"] + par["frozen"] and par["ssl"] > 0
    assert par["frozen"] == sum(p.numel() for p in model.parameters() if not p.requires_grad)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--method", "nope"], "nope"),
        (["--set", "no_such_key=1"], "no_such_key"),
        (["--set", "equi_dims=4096"], "equi_dims"),
        (["--device", "tpu"], "device"),
    ],
)
def test_bench_train_bad_input_exits_2(tmp_path, capsys, argv, message):
    base = ["bench", "train", "--image-size", "16", "--batch-size", "4", "--steps", "1", "--warmup", "0"]
    assert main([*base, *argv, "--out", str(tmp_path / "x.json")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "x.json").exists()


# --------------------------------------------------------------------------- loader


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory):
    """3 classes x 2 objects x 3 views at 16 px, rendered with the always-available scalar variant."""
    from equivision.renderers.iebench import RenderConfig, run_render
    from equivision.renderers.scene import SceneSettings

    out = tmp_path_factory.mktemp("tiny_iebench")
    cfg = RenderConfig(
        out=str(out),
        source="procedural",
        source_options={"objects_per_class": 2, "classes": ["chair", "mug", "table"]},
        views_per_object=3,
        variant="scalar_rgb",
        denoise="off",
        scene=SceneSettings(resolution=16, spp=2, sun="directional"),
    )
    assert run_render(cfg, workers=1, progress=False).complete
    return out


def test_bench_loader_in_process(tiny_dataset):
    r = bench_loader(tiny_dataset, image_size=16, batch_size=4, workers=0, views=2, batches=3)
    assert r["batches"] == 3 and r["warmup_batches"] == 1
    assert r["batch_shape"] == [4, 2, 3, 16, 16]
    assert r["img_per_s"] > 0 and math.isclose(r["img_per_s"], 3 * 4 * 2 / r["seconds"])
    assert r["dataset"]["latent_size"] == 7 and r["dataset"]["views_per_object"] == 3


def test_loader_report_ratio_by_hand():
    loaders = [{"workers": 1, "img_per_s": 30.0}, {"workers": 2, "img_per_s": 90.0}]
    rep = loader_report(loaders, {"img_per_s": {"train": 20.0}, "environment": {}})
    assert [x["loader_ratio"] for x in rep["loaders"]] == [1.5, 4.5]
    assert [x["pass"] for x in rep["loaders"]] == [False, True]
    assert rep["loader_ratio"] == 4.5 and rep["loader_ratio_workers"] == 2 and rep["loader_ratio_pass"]


def test_bench_loader_cli(tiny_dataset, tmp_path):
    out = tmp_path / "loader.json"
    argv = ["bench", "loader", "--data", str(tiny_dataset), "--image-size", "16", "--batch-size", "4"]
    argv += ["--workers", "0,1", "--batches", "3", "--method", "sie", "--low-res-stem", "--steps", "1"]
    argv += ["--warmup", "0", "--device", "cpu", "--set", "mlp=32-32", "--out", str(out)]
    assert main(argv) == 0
    r = json.loads(out.read_text())
    assert [x["workers"] for x in r["loaders"]] == [0, 1]
    assert [x["warmup_batches"] for x in r["loaders"]] == [1, 3]
    _check_train_report(r["train"], images_per_step=8, backbone_images_per_step=8, steps=1)
    for x in r["loaders"]:
        assert x["img_per_s"] > 0
        assert math.isclose(x["loader_ratio"], x["img_per_s"] / r["train_img_per_s"])
    assert r["loader_ratio"] == max(x["loader_ratio"] for x in r["loaders"])
    assert r["loader_ratio_pass"] == (r["loader_ratio"] >= 3)


def test_bench_loader_missing_data_exits_2(tmp_path, capsys):
    missing = tmp_path / "nothing_here"
    assert main(["bench", "loader", "--data", str(missing), "--out", str(tmp_path / "l.json")]) == 2
    err = capsys.readouterr().err
    assert str(missing) in err and "equivision render iebench" in err
    assert not (tmp_path / "l.json").exists()


def test_bench_loader_bad_workers_exits_2(tiny_dataset, tmp_path, capsys):
    assert main(["bench", "loader", "--data", str(tiny_dataset), "--workers", "1,x"]) == 2
    assert "--workers" in capsys.readouterr().err


@pytest.mark.slow
def test_bench_train_compiled_steps(tmp_path, capsys):
    """--compile BACKEND wraps the backbone and the method in torch.compile (the eager backend
    here: dynamo captures the graphs without code generation, quick on a CPU)."""
    import torch._dynamo

    torch._dynamo.reset()
    overrides, views = _tiny_method_setup("sie")
    torch.manual_seed(0)
    model = build_method("sie", build_backbone("resnet18", low_res_stem=True), overrides).train()
    r = bench_train(
        "sie",
        image_size=16,
        batch_size=4,
        views=views,
        steps=1,
        warmup=1,
        device="cpu",
        model=model,
        compile_backend="eager",
    )
    assert r["compile"] == "eager" and r["ssl_overhead"] == r["ssl_overhead"]  # finite, not NaN
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] >= 2  # backbone and method captured
    with pytest.raises(ValueError, match="warmup >= 1"):
        bench_train(
            "sie", image_size=16, batch_size=4, steps=1, warmup=0, device="cpu", compile_backend="eager"
        )
    base = ["bench", "train", "--image-size", "16", "--batch-size", "4", "--steps", "1", "--warmup", "0"]
    assert main([*base, "--compile", "eager", "--out", str(tmp_path / "c.json")]) == 2
    assert "warmup >= 1" in capsys.readouterr().err


def test_unknown_compile_backend_exits_2_before_any_step(tmp_path, capsys):
    base = ["bench", "train", "--image-size", "16", "--batch-size", "4", "--steps", "1", "--warmup", "1"]
    assert main([*base, "--compile", "no_such_backend", "--out", str(tmp_path / "c.json")]) == 2
    err = capsys.readouterr().err
    assert "unknown torch.compile backend 'no_such_backend'" in err and "inductor" in err
    assert not (tmp_path / "c.json").exists()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--method", "nope"], "nope"),
        (["--set", "no_such_key=1"], "no_such_key"),
        (["--compile", "no_such_backend"], "no_such_backend"),
    ],
)
def test_bench_loader_bad_step_settings_exit_2_before_the_loader_runs(
    tiny_dataset, tmp_path, capsys, argv, message
):
    base = ["bench", "loader", "--data", str(tiny_dataset), "--image-size", "16", "--batch-size", "4"]
    assert main([*base, "--workers", "0", *argv, "--out", str(tmp_path / "l.json")]) == 2
    captured = capsys.readouterr()
    assert message in captured.err
    assert "loader:" not in captured.out  # refused before timing the loader
    assert not (tmp_path / "l.json").exists()


def test_bench_loader_reads_split_files_from_split_dir(tiny_dataset, tmp_path, capsys):
    """The official download keeps its split files in the SIE repository's data/ folder."""
    import shutil

    root, splits = tmp_path / "images_only", tmp_path / "SIE_data"
    shutil.copytree(tiny_dataset, root)
    splits.mkdir()
    for f in ("train_images.npy", "train_labels.npy", "val_images.npy", "val_labels.npy"):
        shutil.move(root / f, splits / f)
    base = ["bench", "loader", "--data", str(root), "--image-size", "16", "--batch-size", "4"]
    base += ["--workers", "0", "--batches", "1", "--steps", "1", "--warmup", "0", "--device", "cpu"]
    base += ["--set", "mlp=32-32", "--low-res-stem"]
    assert main([*base, "--out", str(tmp_path / "a.json")]) == 2  # no split files under DATA
    assert "train_images.npy" in capsys.readouterr().err
    assert main([*base, "--split-dir", str(splits), "--out", str(tmp_path / "b.json")]) == 0
    r = json.loads((tmp_path / "b.json").read_text())
    assert r["loaders"][0]["dataset"]["split_dir"] == str(splits)
    assert r["loaders"][0]["dataset"]["train_objects"] == len(np.load(splits / "train_images.npy"))


@pytest.mark.parametrize("command", [["bench", "train"], ["bench", "loader", "--data", "."]])
@pytest.mark.parametrize("value", ["1", "0", "x"])
def test_batch_size_below_two_is_refused_by_the_parser(command, value, capsys):
    from equivision.cli import main as cli

    with pytest.raises(SystemExit) as e:
        cli([*command, "--batch-size", value])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "argument --batch-size" in err and "Traceback" not in err
    assert f"expected an integer >= 2 (BatchNorm needs two samples), got '{value}'" in err

"""Pretraining config: defaults <- YAML <- key=value, struct-mode typo rejection, recipes."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from omegaconf.errors import ReadonlyConfigError

from equivision.ssl.config import (
    ConfigError,
    PretrainConfig,
    as_config,
    load_config,
    method_config,
    require_complete,
    to_dict,
    to_yaml,
)
from equivision.ssl.sie import SIEConfig

RECIPES = Path(__file__).resolve().parents[2] / "scripts" / "pretrain"


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "cfg.yaml"
    p.write_text(text)
    return p


def test_merge_order_defaults_then_yaml_then_overrides(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "data: {root: /d, batch_size: 32}\n"
        "optim: {lr: 0.01, schedule: cosine}\n"
        "method: {name: sie, sim_coeff: 3}\n",
    )
    cfg = load_config(path, ["optim.lr=0.5", "method.equi_dims=128", "data.image_size=null"])
    assert cfg.optim.lr == 0.5  # override beats YAML
    assert cfg.optim.schedule == "cosine" and cfg.data.batch_size == 32  # YAML beats defaults
    assert cfg.optim.weight_decay == 1e-6 and cfg.epochs == PretrainConfig.epochs  # defaults kept
    assert cfg.method.sim_coeff == 3.0 and cfg.method.equi_dims == 128
    assert cfg.method.equi_factor == SIEConfig.equi_factor  # method defaults from the method's Config
    assert cfg.data.image_size is None and cfg.data.root == "/d"
    # a base mapping sits between the defaults and the file
    cfg2 = load_config(path, base={"epochs": 7, "optim": {"lr": 9.0}})
    assert cfg2.epochs == 7 and cfg2.optim.lr == 0.01


def test_method_section_follows_method_name(tmp_path: Path) -> None:
    cfg = load_config(overrides=["method.name=vicreg"])
    assert set(cfg.method.keys()) == {"name", "mlp", "sim_coeff", "std_coeff", "cov_coeff"}
    assert cfg.method.sim_coeff == 25.0
    # the last layer that names the method decides the schema; SIE keys are then unknown
    path = write(tmp_path, "method: {name: sie, equi_dims: 8}\n")
    with pytest.raises(ConfigError, match=r"'method.equi_dims'.*method 'vicreg'"):
        load_config(path, ["method.name=vicreg"])
    with pytest.raises(ConfigError, match=r"method.name: unknown method 'nope'; known: .*sie"):
        load_config(overrides=["method.name=nope"])


@pytest.mark.parametrize(
    ("source", "match"),
    [
        (
            "optim.lrr=1",
            r"command-line overrides: unknown config key 'optim.lrr' \(did you mean optim.lr\?\)",
        ),
        ("lrr=2", r"unknown config key 'lrr'; known keys in the top level: seed, data"),
        ("method.equi_dimz=3", r"unknown config key 'method.equi_dimz' \(did you mean method.equi_dims\?\)"),
        ("data.batchsize=3", r"'data.batchsize' \(did you mean data.batch_size\?\)"),
    ],
)
def test_typos_are_rejected_in_overrides(source: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        load_config(overrides=[source])


def test_typos_are_rejected_in_yaml(tmp_path: Path) -> None:
    path = write(tmp_path, "optim:\n  lrr: 1\n")
    with pytest.raises(ConfigError, match=rf"config file {path}: unknown config key 'optim.lrr'"):
        load_config(path)
    path = write(tmp_path, "method:\n  name: sie\n  sim_cof: 1\n")
    with pytest.raises(ConfigError, match=r"'method.sim_cof' \(did you mean method.sim_coeff\?\)"):
        load_config(path)


@pytest.mark.parametrize(
    ("override", "match"),
    [
        ("optim.lr=abc", r"could not be converted to Float \(key optim.lr\)"),
        ("method.equi_dims=x", r"key method.equi_dims"),
        ("precision=fp16", r"precision='fp16' is not valid; expected one of: auto, fp32, bf16"),
        ("optim.name=lamb", r"optim.name='lamb' is not valid; expected one of: adam, adamw, sgd"),
        ("optim.schedule=step", r"optim.schedule='step'"),
        ("data.batch_size=0", r"data.batch_size=0 must be a positive integer"),
        (
            "data.batch_size=1",
            r"data.batch_size=1 is too small: the methods' BatchNorm layers need at least 2",
        ),
        ("grad_clip=-1", r"grad_clip=-1.0 must be > 0"),
        ("optim", r"'optim' is not of the form key=value"),
    ],
)
def test_bad_values_are_rejected(override: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        load_config(overrides=[override])


def test_missing_root_is_named() -> None:
    cfg = load_config()
    with pytest.raises(ConfigError, match=r"not set: data.root"):
        require_complete(cfg)
    require_complete(load_config(overrides=["data.root=/x"]))


def test_missing_or_bad_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="must hold a mapping"):
        load_config(write(tmp_path, "- 1\n- 2\n"))


def test_resolved_config_round_trips(tmp_path: Path) -> None:
    cfg = load_config(overrides=["data.root=/x", "method.mlp=64-64", "optim.lr=0.25", "max_steps=3"])
    saved = write(tmp_path, to_yaml(cfg))
    again = load_config(saved)
    assert to_dict(again) == to_dict(cfg)
    assert as_config(to_dict(cfg)) == cfg and as_config(cfg) is cfg
    m = method_config(cfg)
    assert isinstance(m, SIEConfig) and m.mlp == "64-64" and m.equi_dims == 256
    with pytest.raises(ReadonlyConfigError, match="read-only"):
        cfg.optim.lr = 1.0
    assert cfg.optim.lr == 0.25


# lidar/ recipes are read by `equivision lidar pretrain` (their own config, tested in tests/lidar)
RECIPE_FILES = sorted(p for p in RECIPES.glob("*/*.yaml") if p.parent.name != "lidar")


def test_recipes_exist() -> None:
    names = {f"{p.parent.name}/{p.name}" for p in RECIPE_FILES}
    want = {"mini/sie.yaml", "mini/vicreg.yaml", "mini/simclr.yaml"}
    want |= {f"3diebench/{m}.yaml" for m in ("sie", "sie_rotcolor", "vicreg", "simclr")}
    assert want <= names


@pytest.mark.parametrize("path", RECIPE_FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_recipe_loads(path: Path) -> None:
    raw = yaml.safe_load(path.read_text())
    cfg = load_config(path, ["data.root=/data"])
    assert cfg.method.name == raw["method"]["name"]
    assert cfg.run_name == raw.get("run_name") and cfg.data.root == "/data"


def test_sie_recipe_is_the_paper() -> None:
    cfg = load_config(RECIPES / "3diebench/sie.yaml", ["data.root=/data"])
    assert (cfg.optim.name, cfg.optim.lr, cfg.optim.weight_decay, cfg.optim.schedule) == (
        "adam", 1e-3, 1e-6, "constant"
    )  # fmt: skip
    assert (cfg.data.batch_size, cfg.epochs, cfg.data.image_size) == (1024, 2000, 256)
    assert cfg.backbone.name == "sie_resnet18" and not cfg.backbone.low_res_stem
    m = cfg.method
    assert (m.name, m.equi_dims, m.mlp) == ("sie", 256, "2048-2048-2048")
    assert (m.sim_coeff, m.std_coeff, m.cov_coeff, m.equi_factor) == (10.0, 10.0, 1.0, 0.45)
    rc = load_config(RECIPES / "3diebench/sie_rotcolor.yaml", ["data.root=/data"])
    assert rc.method.name == "sie_rotcolor" and rc.method.rotcolor
    assert to_dict(rc.optim) == to_dict(cfg.optim) and rc.data.batch_size == 1024


def test_cli_print_config_and_errors(capsys: pytest.CaptureFixture) -> None:
    from equivision.cli import main

    assert (
        main(["pretrain", "--config", str(RECIPES / "mini/sie.yaml"), "optim.lr=0.5", "--print-config"]) == 0
    )
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["optim"]["lr"] == 0.5 and printed["method"]["name"] == "sie"
    assert main(["pretrain", "--config", str(RECIPES / "mini/sie.yaml"), "optim.lrr=1"]) == 2
    assert "unknown config key 'optim.lrr'" in capsys.readouterr().err
    assert main(["pretrain", "--config", str(RECIPES / "mini/sie.yaml")]) == 2  # data.root is required
    assert "data.root" in capsys.readouterr().err

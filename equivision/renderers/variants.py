"""Choosing the Mitsuba 3 variant: CUDA when a GPU is usable, else LLVM (needs libLLVM >= 16,
found through ``DRJIT_LIBLLVM_PATH`` or the usual system folders), else ``scalar_rgb``, which
always works. Mitsuba is imported here, lazily, after ``DRJIT_LIBLLVM_PATH`` is set."""

from __future__ import annotations

import glob
import os
import re
from dataclasses import dataclass

AUTO_ORDER = ("cuda_ad_rgb", "llvm_ad_rgb", "scalar_rgb")
MIN_LLVM = 16
FAST_CPU_HINT = (
    "the fast CPU renderer needs libLLVM >= 16: `apt-get update && apt-get install -y libllvm19` "
    "(or set DRJIT_LIBLLVM_PATH to a libLLVM.so); using scalar_rgb, which is several times slower"
)
_LLVM_GLOBS = (
    "/usr/lib/x86_64-linux-gnu/libLLVM*.so*",
    "/usr/lib/aarch64-linux-gnu/libLLVM*.so*",
    "/usr/lib/llvm-*/lib/libLLVM*.so*",
    "/usr/local/lib/libLLVM*.so*",
    "/opt/homebrew/opt/llvm/lib/libLLVM.dylib",
    "/usr/local/opt/llvm/lib/libLLVM.dylib",
)


@dataclass(frozen=True)
class VariantChoice:
    variant: str
    note: str = ""  # why a faster variant was not used, if it was not


def _llvm_version(path: str) -> int:
    m = re.search(r"LLVM[-.]?(\d+)", os.path.basename(path)) or re.search(r"llvm-(\d+)", path)
    return int(m.group(1)) if m else -1


def find_libllvm() -> str | None:
    """Path of a libLLVM >= 16: DRJIT_LIBLLVM_PATH if set and present, else the newest found."""
    env = os.environ.get("DRJIT_LIBLLVM_PATH")
    if env and os.path.exists(env):
        return env
    found = [p for g in _LLVM_GLOBS for p in glob.glob(g) if os.path.isfile(p)]
    found = [p for p in found if _llvm_version(p) >= MIN_LLVM]
    if not found:
        return None
    return max(found, key=lambda p: (_llvm_version(p), -len(p)))


def _has_cuda_driver() -> bool:
    return any(
        glob.glob(p)
        for p in (
            "/usr/lib/x86_64-linux-gnu/libcuda.so*",
            "/usr/lib64/libcuda.so*",
            "/usr/lib/wsl/lib/libcuda.so*",
            "/usr/local/nvidia/lib64/libcuda.so*",  # containers that mount the driver there
            "/usr/local/cuda/compat/libcuda.so*",
        )
    ) and os.path.exists("/dev/nvidia0")


def choose_variant(requested: str = "auto") -> VariantChoice:
    """Set and return the Mitsuba variant. ``requested`` is a variant name or "auto"."""
    lib = find_libllvm()
    if lib and not os.environ.get("DRJIT_LIBLLVM_PATH"):
        os.environ["DRJIT_LIBLLVM_PATH"] = lib
    import mitsuba as mi

    if requested != "auto":
        if requested not in mi.variants():
            raise ValueError(f"unknown Mitsuba variant {requested!r}; available: {', '.join(mi.variants())}")
        if requested.startswith("llvm") and lib is None:
            raise ValueError(f"variant {requested} needs libLLVM >= {MIN_LLVM}: {FAST_CPU_HINT}")
        mi.set_variant(requested)
        return VariantChoice(requested)
    notes = []
    for v in AUTO_ORDER:
        if v.startswith("cuda") and not _has_cuda_driver():
            continue
        if v.startswith("llvm") and lib is None:
            notes.append(FAST_CPU_HINT)
            continue
        try:
            mi.set_variant(v)
        except Exception as e:  # noqa: BLE001 - any backend failure means "try the next one"
            notes.append(f"{v} unavailable: {e}")
            continue
        return VariantChoice(v, "; ".join(notes))
    raise RuntimeError("no Mitsuba variant could be set: " + "; ".join(notes))


def is_jit(variant: str) -> bool:
    return variant.startswith(("llvm", "cuda"))

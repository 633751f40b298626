"""Turn a ``--device`` / ``device=`` value into a :class:`torch.device`, or say clearly why not."""

from __future__ import annotations

import torch


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"``: ``cuda`` if available, else ``cpu``; ``cpu``, ``cuda``, ``cuda:N`` (or other torch
    device strings) as given. Raises ``ValueError`` (one line) for a string torch does not know or a
    CUDA device that is not there, instead of failing later inside torch."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"device={str(device)!r} is not valid; expected auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device={str(device)!r} but CUDA is not available (use cpu or auto)")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            n = torch.cuda.device_count()
            raise ValueError(f"device={str(device)!r} but only {n} CUDA device(s) exist")
    return dev

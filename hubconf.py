"""torch.hub entry points: one per checkpoint in ``equivision.checkpoints`` (generated from the registry).

    torch.hub.load("<owner>/<repo>", "equicaps_3diebench", pretrained=True)
    torch.hub.load("/path/to/checkout", "seqjepa_3diebench_rot", source="local", file="ckpt.pth")

Each entry is ``NAME(pretrained=True, file=None, device="cpu", **kwargs) -> backbone`` (eval mode; the
record is ``backbone.equivision_record``); ``pretrained=False`` builds the architecture only.
"""

dependencies = ["torch", "torchvision", "timm", "safetensors", "huggingface_hub"]

from equivision.api import hub_entrypoints as _hub_entrypoints  # noqa: E402

globals().update(_hub_entrypoints())

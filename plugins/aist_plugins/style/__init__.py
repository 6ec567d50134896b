"""First-party style plugins (seed report chapter 4). REGISTRY lists (kind, name, "module:Class");
keep imports light (no torch here)."""

_STYLE = "aist_plugins.style"

REGISTRY: list[tuple[str, str, str]] = [
    # translator: CycleGAN on RGBA renders with pluggable annotation losses
    ("translator", "cyclegan", f"{_STYLE}.cyclegan:CycleGAN"),
    # translator: training-free baseline, Reinhard et al. colour transfer in Lab on object pixels
    ("translator", "colour-transfer", f"{_STYLE}.colour_transfer:ColourTransfer"),
    # annotation losses: extra generator terms that keep the mask and the content
    ("annotation_loss", "alpha", f"{_STYLE}.losses:AlphaLoss"),
    ("annotation_loss", "resnet-feature", f"{_STYLE}.losses:ResNetFeatureLoss"),
]

"""The ESG-ConvNeXt network, registered in timm on import."""
from .attention import ELA, GAM, SimAM, simam
from .esg_convnext import (ABLATION_ROWS, ATTENTIONS, SIZES, ESGBlock, ESGConvNeXt, checkpoint_filter_fn,
                           esg_convnext)

__all__ = ["ELA", "GAM", "SimAM", "simam", "ESGConvNeXt", "ESGBlock", "esg_convnext", "SIZES",
           "ABLATION_ROWS", "ATTENTIONS", "checkpoint_filter_fn", "model_names"]


def model_names() -> list[str]:
    """Every ESG-ConvNeXt name registered in timm (sizes and ablation rows)."""
    import timm
    return sorted(timm.list_models("esg_convnext_*"))

"""ESG-ConvNeXt paper companion.

Importing this package registers the ESG-ConvNeXt models in timm, so that
``timm.create_model('esg_convnext_atto', num_classes=7)`` works afterwards.

Paper: Zhang N., Liu Z., Zhang E., Chen Y., Yue J. "An ESG-ConvNeXt network for steel
surface defect classification based on hybrid attention mechanism". Sci Rep 15 (2025).
doi:10.1038/s41598-025-88958-6
"""
from __future__ import annotations

__version__ = "0.1.0"

from . import models  # noqa: F401  (registers the models in timm)

__all__ = ["__version__", "models"]

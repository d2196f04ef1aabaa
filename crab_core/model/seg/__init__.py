"""SAM-style multi-scale segmentation module of Crab (see :mod:`.seg_module`)."""

from .seg_module import (
    FUSION_KEYS,
    PE_BUFFER_KEYS,
    SegModule,
    SegOutput,
    ours_to_reference,
    reference_to_ours,
)

__all__ = [
    "FUSION_KEYS",
    "PE_BUFFER_KEYS",
    "SegModule",
    "SegOutput",
    "ours_to_reference",
    "reference_to_ours",
]

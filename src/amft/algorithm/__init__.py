"""Framework-independent AMFT math on torch tensors: losses, gradient alignment, mu controllers."""

from .alignment import (
    Gradients,
    combine_gradients,
    gradient_cosine,
    gradient_dot,
    gradient_dots,
    gradient_norm_sq,
)
from .controllers import (
    CONTROLLERS,
    BalanceController,
    ControllerStats,
    FixedMuController,
    MetaAlignment,
    MetaGradientController,
    build_controller,
    meta_alignment_from_gradients,
)
from .losses import (
    ADVANTAGE_SCALES,
    AGGREGATIONS,
    clipped_surrogate,
    group_advantages,
    masked_mean,
    sft_loss,
    token_entropy,
    token_log_probs,
)

__all__ = [
    "ADVANTAGE_SCALES",
    "AGGREGATIONS",
    "CONTROLLERS",
    "BalanceController",
    "ControllerStats",
    "FixedMuController",
    "Gradients",
    "MetaAlignment",
    "MetaGradientController",
    "build_controller",
    "clipped_surrogate",
    "combine_gradients",
    "gradient_cosine",
    "gradient_dot",
    "gradient_dots",
    "gradient_norm_sq",
    "group_advantages",
    "masked_mean",
    "meta_alignment_from_gradients",
    "sft_loss",
    "token_entropy",
    "token_log_probs",
]

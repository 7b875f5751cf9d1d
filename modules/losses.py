"""Losses as pure tensor functions. Each returns per-example losses plus detached statistics.

Shapes are noted as ``# [B]`` (one entry per preference pair). Log-probabilities are summed over the
completion tokens of a sequence.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

DPO_LOSS_TYPES = ("sigmoid", "ipo", "hinge")


def dpo_loss(
    policy_chosen_logps: torch.Tensor,  # [B]
    policy_rejected_logps: torch.Tensor,  # [B]
    ref_chosen_logps: torch.Tensor,  # [B]
    ref_rejected_logps: torch.Tensor,  # [B]
    beta: float = 0.1,
    loss_type: str = "sigmoid",
    label_smoothing: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Direct Preference Optimization (Rafailov et al., 2023) and two of its variants.

    With h = (pi_c - ref_c) - (pi_r - ref_r), the log-ratio margin:
    - ``sigmoid``: -(1 - eps) log sigma(beta h) - eps log sigma(-beta h), where eps = label_smoothing
      is the assumed probability that a label is flipped (conservative DPO, Mitchell 2023).
    - ``ipo``: (h - 1 / (2 beta))^2 (Azar et al., 2023); beta plays the role of tau.
    - ``hinge``: max(0, 1 - beta h) (SLiC, Zhao et al., 2023).

    Returns (losses, chosen_rewards, rejected_rewards), all # [B]; the rewards are beta times the
    policy/reference log-ratios, detached.
    """
    if beta <= 0:
        raise ValueError(f"beta must be > 0, got {beta}")
    if not 0.0 <= label_smoothing < 0.5:
        raise ValueError(f"label_smoothing must be in [0, 0.5), got {label_smoothing}")
    chosen_ratio = policy_chosen_logps - ref_chosen_logps  # [B]
    rejected_ratio = policy_rejected_logps - ref_rejected_logps  # [B]
    h = chosen_ratio - rejected_ratio  # [B]
    if loss_type == "sigmoid":
        losses = -(1 - label_smoothing) * F.logsigmoid(beta * h) - label_smoothing * F.logsigmoid(-beta * h)
    elif loss_type == "ipo":
        losses = (h - 1 / (2 * beta)) ** 2
    elif loss_type == "hinge":
        losses = torch.relu(1 - beta * h)
    else:
        raise ValueError(f"loss_type must be one of {DPO_LOSS_TYPES}, got {loss_type!r}")
    return losses, beta * chosen_ratio.detach(), beta * rejected_ratio.detach()


def masked_mean(values: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Mean of ``values`` where ``mask`` is true; 0 where nothing is unmasked."""
    mask = mask.to(values.dtype)
    if dim is None:
        return (values * mask).sum() / mask.sum().clamp(min=1)
    return (values * mask).sum(dim) / mask.sum(dim).clamp(min=1)

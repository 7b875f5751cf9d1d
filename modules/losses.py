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


def sft_loss(token_logps: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Supervised fine-tuning loss: the mean negative log-likelihood over completion tokens only.

    ``token_logps`` # [N, L] holds the log-probability of each completion token (prompt and padding
    never appear: the policy computes completion positions only); ``mask`` # [N, L] marks real tokens.
    Every token weighs the same, so long completions count more, as in a plain causal-LM loss with
    the prompt's labels set to -100.
    """
    mask = mask.to(token_logps.dtype)
    return -(token_logps * mask).sum() / mask.sum().clamp(min=1.0)


def masked_mean(values: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Mean of ``values`` where ``mask`` is true; 0 where nothing is unmasked."""
    mask = mask.to(values.dtype)
    if dim is None:
        return (values * mask).sum() / mask.sum().clamp(min=1)
    return (values * mask).sum(dim) / mask.sum(dim).clamp(min=1)


# ---------------------------------------------------------------------------------------------------
# On-policy RL pieces (PPO, GRPO, RAE). Shapes: ``[B, T]`` = rows of turns (one seat in one game),
# ``[N, L]`` = completions x completion tokens, ``[N]`` = one entry per completion.
# ---------------------------------------------------------------------------------------------------

POLICY_LOSS_AGGREGATIONS = ("token_mean", "sequence_mean", "token_sum_constant")
KL_ESTIMATORS = ("k1", "k2", "k3")


def gae(
    rewards: torch.Tensor,  # [B, T]
    values: torch.Tensor,  # [B, T]
    mask: torch.Tensor,  # [B, T] bool or 0/1
    gamma: float = 1.0,
    gae_lambda: float = 0.95,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalized Advantage Estimation (Schulman et al., 2016, "High-Dimensional Continuous Control
    Using Generalized Advantage Estimation") over the turns of one seat in one game per row.

    delta_t = r_t + gamma * V_{t+1} - V_t and A_t = delta_t + gamma * lambda * A_{t+1}, with the value
    and the advantage after the last real turn taken as 0 (episodic: the game is over). Real turns are
    expected to be a prefix of the row; a masked position anywhere gets advantage 0 and return 0, and
    neither its reward nor its value feeds back into earlier turns (it cuts the row like a game end).

    The inputs are detached: advantages and returns are targets, not differentiated through.

    Returns (advantages, returns), both # [B, T], with returns = advantages + values on real turns.
    """
    if not 0.0 <= gamma <= 1.0:
        raise ValueError(f"gamma must be in [0, 1], got {gamma}")
    if not 0.0 <= gae_lambda <= 1.0:
        raise ValueError(f"gae_lambda must be in [0, 1], got {gae_lambda}")
    if rewards.dim() != 2 or rewards.shape != values.shape or rewards.shape != mask.shape:
        raise ValueError(
            "rewards, values and mask must all be [B, T]; got "
            f"{tuple(rewards.shape)}, {tuple(values.shape)}, {tuple(mask.shape)}"
        )
    real = mask.bool()
    zero = torch.zeros((), dtype=values.dtype, device=values.device)
    r = torch.where(real, rewards.detach().to(values.dtype), zero)  # [B, T]
    v = torch.where(real, values.detach(), zero)  # [B, T]
    advantages = torch.zeros_like(v)  # [B, T]
    next_adv = torch.zeros_like(v[:, 0])  # [B]
    next_value = torch.zeros_like(v[:, 0])  # [B]
    for t in reversed(range(v.shape[1])):
        delta = r[:, t] + gamma * next_value - v[:, t]  # [B]
        adv_t = torch.where(real[:, t], delta + gamma * gae_lambda * next_adv, zero)  # [B]
        advantages[:, t] = adv_t
        next_adv, next_value = adv_t, v[:, t]  # both 0 at a masked position
    returns = torch.where(real, advantages + v, zero)  # [B, T]
    return advantages, returns


def ppo_policy_loss(
    logp: torch.Tensor,  # [N, L]
    old_logp: torch.Tensor,  # [N, L]
    advantages: torch.Tensor,  # [N] or [N, L]
    mask: torch.Tensor,  # [N, L] bool or 0/1
    clip_eps: float = 0.2,
    aggregation: str = "token_mean",
    constant: float | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Clipped surrogate policy loss of PPO (Schulman et al., 2017) at token level.

    With r = exp(logp - old_logp) per token, the per-token loss is -min(r A, clip(r, 1 - eps, 1 + eps) A);
    ``advantages`` of shape [N] are broadcast over the tokens of each completion. Padded tokens
    (``mask`` false) contribute nothing, whatever their log-probabilities hold. ``aggregation``:

    - ``token_mean``: sum over all real tokens of the batch / number of real tokens.
    - ``sequence_mean``: mean over the real tokens of each sequence, then mean over the sequences that
      have at least one real token (GRPO, Shao et al., 2024).
    - ``token_sum_constant``: sum over all real tokens / (N * ``constant``), ``constant`` defaulting to L,
      the padded length (Dr. GRPO, Liu et al., 2025: no length normalisation).

    Returns (loss, stats): a scalar loss and detached scalar statistics over the real tokens:
    ``clip_fraction`` (share of tokens where the clipped branch is the active one: r > 1 + eps with
    A > 0, or r < 1 - eps with A < 0), ``approx_kl`` (mean of (r - 1) - log r, the k3 estimator of
    KL(old || new)) and ``ratio_mean``.
    """
    if aggregation not in POLICY_LOSS_AGGREGATIONS:
        raise ValueError(f"aggregation must be one of {POLICY_LOSS_AGGREGATIONS}, got {aggregation!r}")
    if clip_eps <= 0:
        raise ValueError(f"clip_eps must be > 0, got {clip_eps}")
    if constant is not None and constant <= 0:
        raise ValueError(f"constant must be > 0, got {constant}")
    if logp.dim() != 2 or logp.shape != old_logp.shape or logp.shape != mask.shape:
        raise ValueError(
            "logp, old_logp and mask must all be [N, L]; got "
            f"{tuple(logp.shape)}, {tuple(old_logp.shape)}, {tuple(mask.shape)}"
        )
    if advantages.dim() == 1:
        advantages = advantages.unsqueeze(-1)  # [N, 1]
    if (
        advantages.dim() != 2
        or advantages.shape[0] != logp.shape[0]
        or advantages.shape[1] not in (1, logp.shape[1])
    ):
        raise ValueError(
            f"advantages must be [N] or [N, L] with [N, L]={tuple(logp.shape)}, got {tuple(advantages.shape)}"
        )
    real = mask.bool()
    zero = torch.zeros((), dtype=logp.dtype, device=logp.device)
    log_ratio = torch.where(real, logp - old_logp.detach(), zero)  # [N, L]; 0 on padding, so r = 1
    ratio = log_ratio.exp()  # [N, L]
    adv = advantages.detach().to(logp.dtype)  # [N, 1] or [N, L]
    unclipped = -adv * ratio  # [N, L]
    clipped = -adv * ratio.clamp(1.0 - clip_eps, 1.0 + clip_eps)  # [N, L]
    per_token = torch.where(real, torch.maximum(unclipped, clipped), zero)  # [N, L]

    m = real.to(logp.dtype)  # [N, L]
    if aggregation == "token_mean":
        loss = per_token.sum() / m.sum().clamp(min=1)
    elif aggregation == "sequence_mean":
        lengths = m.sum(-1)  # [N]
        per_seq = per_token.sum(-1) / lengths.clamp(min=1)  # [N]
        loss = per_seq.sum() / (lengths > 0).sum().clamp(min=1)
    else:
        denom = logp.shape[1] if constant is None else constant
        loss = per_token.sum() / (logp.shape[0] * denom)

    with torch.no_grad():
        adv_full = adv.expand_as(ratio)
        is_clipped = ((ratio > 1.0 + clip_eps) & (adv_full > 0)) | ((ratio < 1.0 - clip_eps) & (adv_full < 0))
        stats = {
            "clip_fraction": masked_mean(is_clipped.to(logp.dtype), real),
            "approx_kl": masked_mean((ratio - 1.0) - log_ratio, real),
            "ratio_mean": masked_mean(ratio, real),
        }
    return loss, stats


def ppo_value_loss(
    values: torch.Tensor,  # any shape, e.g. [B, T]
    old_values: torch.Tensor,  # same shape
    returns: torch.Tensor,  # same shape
    mask: torch.Tensor | None = None,  # same shape, bool or 0/1
    clip_eps: float | None = 0.2,
) -> torch.Tensor:
    """Clipped value loss of PPO (Schulman et al., 2017; the clipping as in OpenAI baselines' ppo2).

    Per entry: 0.5 * max((v - R)^2, (old + clip(v - old, -eps, eps) - R)^2), then the mean over the
    entries where ``mask`` is true (all entries when ``mask`` is None). ``clip_eps=None`` disables the
    clipping: 0.5 * (v - R)^2. Returns a scalar.
    """
    if clip_eps is not None and clip_eps <= 0:
        raise ValueError(f"clip_eps must be > 0 or None, got {clip_eps}")
    if mask is not None:  # zero the padding first, so that garbage there (NaN) cannot reach a gradient
        real = mask.bool()
        zero = torch.zeros((), dtype=values.dtype, device=values.device)
        values = torch.where(real, values, zero)
        old_values = torch.where(real, old_values, zero)
        returns = torch.where(real, returns, zero)
    returns = returns.detach()
    loss = (values - returns) ** 2
    if clip_eps is not None:
        old = old_values.detach()
        v_clipped = old + (values - old).clamp(-clip_eps, clip_eps)
        loss = torch.maximum(loss, (v_clipped - returns) ** 2)
    loss = 0.5 * loss
    if mask is None:
        return loss.mean()
    return masked_mean(loss, real)


def kl_penalty(
    logp: torch.Tensor,  # [N, L] log-probabilities of the sampled tokens under the policy
    ref_logp: torch.Tensor,  # [N, L] the same under the reference
    kind: str = "k3",
) -> torch.Tensor:
    """Per-token estimator of KL(policy || reference) from tokens sampled by the policy (J. Schulman,
    "Approximating KL divergence", 2020). With d = ref_logp - logp:

    - ``k1``: -d = logp - ref_logp (unbiased, high variance, can be negative);
    - ``k2``: d^2 / 2 (biased, low variance, >= 0);
    - ``k3``: exp(d) - d - 1 (unbiased, low variance, >= 0; the one GRPO uses).

    Returns a tensor of the inputs' shape; the caller masks and reduces it.
    """
    if kind not in KL_ESTIMATORS:
        raise ValueError(f"kind must be one of {KL_ESTIMATORS}, got {kind!r}")
    d = ref_logp - logp
    if kind == "k1":
        return -d
    if kind == "k2":
        return 0.5 * d**2
    return d.exp() - d - 1.0


def entropy_from_logits(logits: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Entropy of softmax(logits) over the last dimension: logits [..., V] -> [...].

    Tokens with probability 0 (logit -inf) add nothing; positions where ``mask`` is false get 0.
    """
    logp = F.log_softmax(logits.float(), dim=-1)
    p = logp.exp()
    entropy = -(p * torch.where(p > 0, logp, torch.zeros((), dtype=logp.dtype, device=logp.device))).sum(-1)
    if mask is not None:
        entropy = torch.where(
            mask.bool(), entropy, torch.zeros((), dtype=entropy.dtype, device=entropy.device)
        )
    return entropy


def _group_index(group_ids, n: int, device: torch.device) -> tuple[torch.Tensor, int]:
    """Dense group index # [N] (first-seen order) and the number of groups."""
    if isinstance(group_ids, torch.Tensor):
        if group_ids.dim() != 1:
            raise ValueError(f"group_ids must be 1-D, got shape {tuple(group_ids.shape)}")
        ids = group_ids.tolist()
    else:
        ids = list(group_ids)
    if len(ids) != n:
        raise ValueError(f"group_ids has {len(ids)} entries, rewards has {n}")
    dense: dict = {}
    index = [dense.setdefault(g, len(dense)) for g in ids]
    return torch.tensor(index, dtype=torch.long, device=device), len(dense)


def group_advantages(
    rewards: torch.Tensor,  # [N]
    group_ids,  # [N]: a sequence of hashables or a 1-D integer tensor
    scale_std: bool = True,
    eps: float = 1e-4,
) -> torch.Tensor:
    """Group-relative advantages of GRPO (Shao et al., 2024, DeepSeekMath).

    Within each group g: A_i = (r_i - mean_g) / (std_g + eps), where std_g is the *sample* standard
    deviation (Bessel-corrected, divisor n_g - 1), as TRL's GRPOTrainer computes it; e.g. rewards (1, 0)
    give +-0.5 / (0.7071 + eps). ``scale_std=False`` drops the division (Dr. GRPO, Liu et al., 2025):
    A_i = r_i - mean_g. A group of one, and any group whose rewards are all equal, gets advantage
    exactly 0 (nothing to learn from it). Returns # [N] in the rewards' float dtype, detached.
    """
    if eps < 0:
        raise ValueError(f"eps must be >= 0, got {eps}")
    if rewards.dim() != 1:
        raise ValueError(f"rewards must be 1-D [N], got shape {tuple(rewards.shape)}")
    r = rewards.detach()
    if not r.is_floating_point():
        r = r.float()
    index, n_groups = _group_index(group_ids, r.shape[0], r.device)
    counts = torch.zeros(n_groups, dtype=r.dtype, device=r.device).index_add_(0, index, torch.ones_like(r))
    sums = torch.zeros(n_groups, dtype=r.dtype, device=r.device).index_add_(0, index, r)
    dev = r - (sums / counts)[index]  # [N]
    hi = torch.full((n_groups,), -float("inf"), dtype=r.dtype, device=r.device).scatter_reduce(
        0, index, r, reduce="amax"
    )
    lo = torch.full((n_groups,), float("inf"), dtype=r.dtype, device=r.device).scatter_reduce(
        0, index, r, reduce="amin"
    )
    flat = (hi == lo)[index]  # [N]: group of one or all-equal group
    dev = torch.where(flat, torch.zeros((), dtype=r.dtype, device=r.device), dev)
    if not scale_std:
        return dev
    sq = torch.zeros(n_groups, dtype=r.dtype, device=r.device).index_add_(0, index, dev**2)
    std = (sq / (counts - 1).clamp(min=1)).sqrt()  # [G]; 0 for a group of one
    return dev / (std[index] + eps)


def _role_key(key) -> str:
    if isinstance(key, str):
        return key
    if isinstance(key, tuple) and len(key) == 2:
        return f"{key[0]}|{key[1]}"
    raise ValueError(f"a RoleBaseline key must be a (game, role) pair or a 'game|role' string, got {key!r}")


class RoleBaseline:
    """Role-conditioned advantage estimation (RAE) of SPIRAL (Liu et al., 2025, arXiv 2506.24119).

    One exponential moving average of the return per (game, role) key, b <- decay * b + (1 - decay) *
    (mean return of that key in the batch), and the advantage r - b(key). The baseline a batch sees is
    the one *before* that batch's update. A key never seen before starts at b = 0 (as in SPIRAL; no bias
    correction), so its first batch's advantages are the raw returns.

    Keys are (game, role) pairs or "game|role" strings; they are stored as "game|role" strings so that
    ``state_dict()`` is a plain JSON-able dict that fits in a Lightning checkpoint.
    """

    def __init__(self, decay: float = 0.95) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"decay must be in [0, 1), got {decay}")
        self.decay = float(decay)
        self.baselines: dict[str, float] = {}
        self.counts: dict[str, int] = {}  # number of updates per key

    def baseline(self, key) -> float:
        """The current baseline of ``key`` (0 for a key never seen)."""
        return self.baselines.get(_role_key(key), 0.0)

    def advantages(self, rewards: torch.Tensor, keys, update: bool = True) -> torch.Tensor:
        """r_i - b(key_i) # [N] with the baselines read before this batch; then, if ``update``, each key
        in the batch moves its baseline towards the mean of its rewards in the batch."""
        if rewards.dim() != 1:
            raise ValueError(f"rewards must be 1-D [N], got shape {tuple(rewards.shape)}")
        names = [_role_key(k) for k in keys]
        if len(names) != rewards.shape[0]:
            raise ValueError(f"keys has {len(names)} entries, rewards has {rewards.shape[0]}")
        r = rewards.detach()
        if not r.is_floating_point():
            r = r.float()
        base = torch.tensor([self.baselines.get(k, 0.0) for k in names], dtype=r.dtype, device=r.device)
        advantages = r - base
        if update:
            values = r.tolist()
            per_key: dict[str, list[float]] = {}
            for k, x in zip(names, values):
                per_key.setdefault(k, []).append(x)
            for k, xs in per_key.items():
                mean = sum(xs) / len(xs)
                self.baselines[k] = self.decay * self.baselines.get(k, 0.0) + (1.0 - self.decay) * mean
                self.counts[k] = self.counts.get(k, 0) + 1
        return advantages

    def state_dict(self) -> dict:
        return {"decay": self.decay, "baselines": dict(self.baselines), "counts": dict(self.counts)}

    def load_state_dict(self, state: dict) -> None:
        """Restores the baselines and counts; ``decay`` stays the constructor's (it is configuration)."""
        self.baselines = {str(k): float(v) for k, v in state["baselines"].items()}
        self.counts = {str(k): int(v) for k, v in state.get("counts", {}).items()}


class AdaptiveKLController:
    """Adaptive KL coefficient of Ziegler et al. (2019), "Fine-Tuning Language Models from Human
    Preferences": error = clip(KL / target - 1, -0.2, 0.2), coef <- coef * (1 + error * n_steps / horizon).

    ``target=None`` keeps the coefficient fixed at ``init_kl_coef``. The coefficient is ``self.value``.
    """

    def __init__(self, init_kl_coef: float, target: float | None = None, horizon: float = 10000) -> None:
        if init_kl_coef < 0:
            raise ValueError(f"init_kl_coef must be >= 0, got {init_kl_coef}")
        if target is not None and target <= 0:
            raise ValueError(
                f"target (the target KL) must be > 0 or None for a fixed coefficient, got {target}"
            )
        if horizon <= 0:
            raise ValueError(f"horizon must be > 0, got {horizon}")
        self.value = float(init_kl_coef)
        self.target = None if target is None else float(target)
        self.horizon = float(horizon)

    def update(self, current_kl: float, n_steps: int) -> float:
        """Moves the coefficient after ``n_steps`` samples with mean KL ``current_kl``; returns it."""
        if self.target is None:
            return self.value
        if n_steps < 0:
            raise ValueError(f"n_steps must be >= 0, got {n_steps}")
        error = min(max(float(current_kl) / self.target - 1.0, -0.2), 0.2)
        self.value *= 1.0 + error * n_steps / self.horizon
        return self.value

    def state_dict(self) -> dict:
        return {"value": self.value, "target": self.target, "horizon": self.horizon}

    def load_state_dict(self, state: dict) -> None:
        """Restores the coefficient; ``target`` and ``horizon`` stay the constructor's (configuration)."""
        self.value = float(state["value"])

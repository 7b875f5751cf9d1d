"""The shared part of PPO and GRPO: a clipped-ratio update on the policy's own sampled answers.

Rows come from :class:`datamodules.onpolicy.OnPolicyDataModule`: one learner turn each, with the
prompt, the sampled completion's token ids and their log-probabilities at sampling time. A subclass
says how advantages are made (:meth:`assign_advantages`, called once per rollout); this base computes
the token-level clipped objective, the KL to the reference (the adapter disabled: no second copy of the
weights) and, when the subclass has a value head, the value loss.
"""

from __future__ import annotations

import torch

from modules.base import PolicyModule
from modules.errors import ConfigError, check_choice
from modules.losses import (
    KL_ESTIMATORS,
    POLICY_LOSS_AGGREGATIONS,
    AdaptiveKLController,
    kl_penalty,
    masked_mean,
    ppo_policy_loss,
    ppo_value_loss,
)
from modules.policy import Policy


class OnPolicyModule(PolicyModule):
    """Base of :class:`~modules.ppo.PPO` and :class:`~modules.grpo.GRPO`.

    Args:
        policy: The LLM policy.
        clip_eps: Ratio clipping (the epsilon of PPO's clipped surrogate).
        kl_coef: Coefficient of the KL penalty to the reference (0: no reference pass at all).
        kl_estimator: ``k1``, ``k2`` or ``k3`` (Schulman's estimators; k3 is unbiased and positive).
        target_kl: With a target, the coefficient adapts (Ziegler et al. 2019) towards it; None keeps it.
        kl_horizon: Horizon of the adaptive controller (in rows).
        loss_aggregation: ``token_mean``, ``sequence_mean`` (GRPO) or ``token_sum_constant`` (Dr. GRPO).
        max_completion_tokens: The constant of ``token_sum_constant`` (the completion budget).
        legal_nll_coef: Weight of a self-imitation term: the mean per-token negative log-likelihood of
            the rollout's own legal answers (rows the env read as a legal move), added to the loss.
            The policy loss alone moves an answer only as far as its advantage says; this term keeps
            the answers that parsed and were legal, their end-of-turn token included, likely, as RPO
            does for DPO's chosen answers. 0 disables it.
        lr, weight_decay, warmup_steps: AdamW and warmup.
    """

    uses_values = False

    def __init__(
        self,
        policy: Policy,
        clip_eps: float = 0.2,
        kl_coef: float = 0.05,
        kl_estimator: str = "k3",
        target_kl: float | None = None,
        kl_horizon: float = 10000.0,
        loss_aggregation: str = "token_mean",
        max_completion_tokens: int | None = None,
        legal_nll_coef: float = 0.0,
        lr: float = 1e-4,
        weight_decay: float = 0.0,
        warmup_steps: int = 0,
    ) -> None:
        super().__init__(policy, lr=lr, weight_decay=weight_decay, warmup_steps=warmup_steps)
        if not 0 < clip_eps < 1:
            raise ConfigError(f"--model.clip_eps must be in (0, 1), got {clip_eps}")
        if kl_coef < 0:
            raise ConfigError(f"--model.kl_coef must be >= 0, got {kl_coef}")
        if target_kl is not None and target_kl <= 0:
            raise ConfigError(f"--model.target_kl must be > 0 (or null for a fixed coefficient), got {target_kl}")
        if kl_horizon <= 0:
            raise ConfigError(f"--model.kl_horizon must be > 0, got {kl_horizon}")
        check_choice(kl_estimator, KL_ESTIMATORS, "--model.kl_estimator")
        check_choice(loss_aggregation, POLICY_LOSS_AGGREGATIONS, "--model.loss_aggregation")
        self.clip_eps, self.kl_estimator, self.loss_aggregation = clip_eps, kl_estimator, loss_aggregation
        self.max_completion_tokens = max_completion_tokens or policy.max_new_tokens
        self.kl = AdaptiveKLController(kl_coef, target_kl, kl_horizon)
        if legal_nll_coef < 0:
            raise ConfigError(f"--model.legal_nll_coef must be >= 0, got {legal_nll_coef}")
        self.legal_nll_coef = legal_nll_coef

    # ------------------------------------------------------------------ advantages (per rollout)
    def assign_advantages(self, rows: list[dict]) -> dict[str, float]:  # pragma: no cover - abstract
        raise NotImplementedError

    @torch.no_grad()
    def fill_old_logps(self, rows: list[dict], batch_size: int = 16) -> None:
        """Rows without sampling-time token log-probabilities (score mode records only the answer's
        total) get them from a no-grad pass of the current policy, which is the sampling policy:
        the rollout has just been played with these weights.

        With a bf16 (or fp16) base every row's are recomputed so: sampling ran another computation
        (token-by-token decoding, other batch layouts, bf16 adapters), and in bf16 its log-probs differ
        from the training pass by rounding, 0.05-0.16 nats per token on average on the embedded model
        (measured), enough to clip many tokens of the first PPO/GRPO step. The ratio's numerator and
        denominator should come from the same computation (here up to the rounding of another batch
        layout, as the update's batches are shuffled); in fp32 they agree to 1e-5 and are kept."""
        policy = self.policy
        low_precision = policy.compute_dtype in (torch.bfloat16, torch.float16)
        todo = [r for r in rows if low_precision or r["old_logps"] is None or r["completion_ids"] is None]
        for r in todo:
            if r["completion_ids"] is None:
                r["completion_ids"] = policy.completion_ids(r["completion"])
        with policy.evaluating():
            for start in range(0, len(todo), batch_size):
                chunk = todo[start : start + batch_size]
                # In low precision the value estimates come from this pass too (PPO's GAE and value
                # clipping then start from what its training pass computes).
                logps, mask, values = policy.token_logps(
                    [policy.prompt_ids(r["prompt"]) for r in chunk],
                    [r["completion_ids"] for r in chunk],
                    values=low_precision and self.uses_values,
                )
                for k, (r, lp, m) in enumerate(zip(chunk, logps, mask)):
                    r["old_logps"] = lp[m].tolist()
                    if values is not None:
                        r["value"] = float(values[k])

    # ------------------------------------------------------------------ the update
    def training_step(self, batch: list[dict], batch_idx: int) -> torch.Tensor:
        policy = self.policy
        prompts = [policy.prompt_ids(r["prompt"]) for r in batch]
        completions = [r["completion_ids"] for r in batch]
        logps, mask, values = policy.token_logps(prompts, completions, values=self.uses_values)
        old = torch.zeros_like(logps)
        for i, r in enumerate(batch):
            old[i, : len(r["old_logps"])] = torch.tensor(r["old_logps"], dtype=old.dtype)
        adv = torch.tensor([float(r["advantage"]) for r in batch], device=logps.device)
        loss, stats = ppo_policy_loss(
            logps, old, adv, mask, self.clip_eps, self.loss_aggregation, self.max_completion_tokens
        )
        logs = {f"train/{k}": float(v) for k, v in stats.items()}
        logs["train/policy_loss"] = float(loss.detach())
        if self.kl.value > 0:
            with torch.no_grad(), policy.reference():
                ref, _, _ = policy.token_logps(prompts, completions)
            kl = masked_mean(kl_penalty(logps, ref, self.kl_estimator), mask)
            loss = loss + self.kl.value * kl
            logs["train/kl"] = float(kl.detach())
            logs["train/kl_coef"] = self.kl.value
            self.kl.update(float(kl.detach()), len(batch))
        legal = torch.tensor([bool(r.get("legal")) for r in batch], device=logps.device)
        if self.legal_nll_coef and bool(legal.any()):
            per_row = -(logps * mask).sum(-1) / mask.sum(-1).clamp(min=1)  # [N] per-token NLL
            nll = per_row[legal].mean()
            loss = loss + self.legal_nll_coef * nll
            logs["train/legal_nll"] = float(nll.detach())
        if self.uses_values:
            value_loss = self.value_loss(values, batch)
            loss = loss + self.vf_coef * value_loss
            logs["train/value_loss"] = float(value_loss.detach())
        logs["train/loss"] = float(loss.detach())
        logs["train/advantage_abs"] = float(adv.abs().mean())
        self.log_dict(logs, batch_size=len(batch), prog_bar=False)
        self.log("train/loss_step", loss.detach(), batch_size=len(batch), prog_bar=True, logger=False)
        return loss

    def value_loss(self, values: torch.Tensor, batch: list[dict]) -> torch.Tensor:
        old = torch.tensor([float(r["value"]) for r in batch], device=values.device)
        returns = torch.tensor([float(r["return"]) for r in batch], device=values.device)
        return ppo_value_loss(values, old, returns, clip_eps=self.value_clip)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint["lightspiel_kl_controller"] = self.kl.state_dict()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        super().on_load_checkpoint(checkpoint)
        if "lightspiel_kl_controller" in checkpoint:
            self.kl.load_state_dict(checkpoint["lightspiel_kl_controller"])

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

#: What score-mode rows' ratio and KL are computed on (see ``score_objective``).
SCORE_OBJECTIVES: tuple[str, ...] = ("tokens", "candidates")


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
            does for DPO's chosen answers. 0 disables it. With ``score_objective: candidates`` it is
            the NLL of each row's legal move as a whole answer (every move of a state's group at equal
            weight), so free-text answers keep the bare form of a move while score mode chooses.
        score_objective: What the ratio and the KL are computed on for rows played in score mode:
            ``tokens`` (the answer's token log-probabilities, as for generated answers) or
            ``candidates`` (the probability score mode actually sampled the move with: the softmax,
            at the rollout's temperature, of every legal move's log-likelihood). With ``candidates``
            a rewarded move gains at the expense of the other legal moves only, not of text that
            was never a choice, and a move the policy rarely picks moves as fast as a likely one.
            GRPO only (PPO's value head reads the token pass).
        lr, weight_decay, warmup_steps, lr_decay: AdamW, warmup and decay (see :class:`PolicyModule`).
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
        score_objective: str = "tokens",
        lr: float = 1e-4,
        weight_decay: float = 0.0,
        warmup_steps: int = 0,
        lr_decay: str = "constant",
    ) -> None:
        super().__init__(policy, lr=lr, weight_decay=weight_decay, warmup_steps=warmup_steps, lr_decay=lr_decay)
        check_choice(score_objective, SCORE_OBJECTIVES, "--model.score_objective")
        if score_objective == "candidates" and self.uses_values:
            raise ConfigError(
                f"--model.score_objective candidates is for GRPO: {type(self).__name__}'s value head reads "
                "the token pass; use tokens"
            )
        self.score_objective = score_objective
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
        if self.score_objective == "candidates":
            missing = [r for r in rows if not r.get("candidates")]
            if missing:
                raise ConfigError(
                    "--model.score_objective candidates needs rollouts in score mode (--data.mode score): "
                    f"{len(missing)} of {len(rows)} rows have no legal moves to normalise over"
                )
            with policy.evaluating():
                for start in range(0, len(rows), batch_size):
                    chunk = rows[start : start + batch_size]
                    for r, lp in zip(chunk, self._candidate_logps(chunk)[0].tolist()):
                        r["old_logps"] = [lp]
            return
        low_precision = policy.compute_dtype in (torch.bfloat16, torch.float16)
        todo = [r for r in rows if low_precision or r["old_logps"] is None or r["completion_ids"] is None]
        for r in todo:
            if r["completion_ids"] is None:
                r["completion_ids"] = policy.completion_ids(r["completion"])
        with policy.evaluating():
            for start in range(0, len(todo), batch_size):
                chunk = todo[start : start + batch_size]
                ids = [policy.prompt_ids(r["prompt"]) for r in chunk]
                completions = [r["completion_ids"] for r in chunk]
                # The training pass's attention kernel (Policy.training_attention), so that in low
                # precision old and new log-probabilities differ only by the batch layout.
                with policy.training_attention(ids, completions):
                    logps, mask, values = policy.token_logps(
                        ids, completions, values=low_precision and self.uses_values
                    )
                # In low precision the value estimates come from this pass too (PPO's GAE and value
                # clipping then start from what its training pass computes).
                for k, (r, lp, m) in enumerate(zip(chunk, logps, mask)):
                    r["old_logps"] = lp[m].tolist()
                    if values is not None:
                        r["value"] = float(values[k])

    def _candidate_logps(self, rows: list[dict]) -> tuple[torch.Tensor, torch.Tensor]:
        """Each row's move's log-probability under score mode's policy (# [N]): the log-softmax, at
        the row's sampling temperature, of the summed log-likelihoods of its legal moves; and the
        move's per-token negative log-likelihood as a whole answer (# [N], end-of-turn included).
        Rows that share a prompt and moves (the answers of one state) share one pass."""
        policy = self.policy
        keys = [(r["prompt"], tuple(r["candidates"])) for r in rows]
        unique = list(dict.fromkeys(keys))
        where = {k: u for u, k in enumerate(unique)}
        ids = [[policy.completion_ids(c) for c in cands] for _, cands in unique]
        prompts = [policy.prompt_ids(p) for p, _ in unique]
        with policy.training_attention(prompts, ids):  # fill_old_logps's no-grad pass as the update's
            scores = policy.completion_logps(prompts, ids)  # [U, K], -inf where a state has fewer moves
        temps = torch.tensor(
            [float(r.get("temperature") or policy.temperature) for r in rows], device=scores.device
        )
        rows_of = [where[k] for k in keys]
        picked = scores[rows_of]  # [N, K]
        logp = torch.log_softmax(picked.float() / temps[:, None], dim=-1)
        index = torch.tensor([int(r["candidate"]) for r in rows], device=scores.device)
        chosen = logp.gather(-1, index[:, None]).squeeze(-1)
        raw = picked.float().gather(-1, index[:, None]).squeeze(-1)
        tokens = torch.tensor([len(ids[u][int(r["candidate"])]) for u, r in zip(rows_of, rows)], device=raw.device)
        return chosen, -raw / tokens

    # ------------------------------------------------------------------ the update
    def _batch_logps(self, batch: list[dict], values: bool = False):
        """What the update compares for ``batch``: ``(logps, mask, values, nll)``, with ``logps`` and
        ``mask`` # [N, L] per token (``score_objective: candidates``: L = 1, the move's score-mode
        log-probability), the value head's estimates when asked, and each row's per-token NLL as a
        whole answer # [N]."""
        if self.score_objective == "candidates":
            chosen, nll = self._candidate_logps(batch)
            return chosen[:, None], torch.ones_like(chosen[:, None], dtype=torch.bool), None, nll
        policy = self.policy
        logps, mask, vals = policy.token_logps(
            [policy.prompt_ids(r["prompt"]) for r in batch], [r["completion_ids"] for r in batch], values=values
        )
        return logps, mask, vals, -(logps * mask).sum(-1) / mask.sum(-1).clamp(min=1)

    def training_step(self, batch: list[dict], batch_idx: int) -> torch.Tensor:
        logps, mask, values, per_row = self._batch_logps(batch, values=self.uses_values)
        old = torch.zeros_like(logps)
        for i, r in enumerate(batch):
            old[i, : len(r["old_logps"])] = torch.tensor(r["old_logps"], dtype=old.dtype)
        adv = torch.tensor([float(r["advantage"]) for r in batch], device=logps.device)
        # One "token" per row under the candidate objective: no length to normalise.
        aggregation = "token_mean" if self.score_objective == "candidates" else self.loss_aggregation
        loss, stats = ppo_policy_loss(logps, old, adv, mask, self.clip_eps, aggregation, self.max_completion_tokens)
        logs = {f"train/{k}": float(v) for k, v in stats.items()}
        logs["train/policy_loss"] = float(loss.detach())
        if self.kl.value > 0:
            with torch.no_grad(), self.policy.reference():
                ref = self._batch_logps(batch)[0]
            kl = masked_mean(kl_penalty(logps, ref, self.kl_estimator), mask)
            loss = loss + self.kl.value * kl
            logs["train/kl"] = float(kl.detach())
            logs["train/kl_coef"] = self.kl.value
            self.kl.update(float(kl.detach()), len(batch))
        legal = torch.tensor([bool(r.get("legal")) for r in batch], device=logps.device)
        if self.legal_nll_coef and bool(legal.any()):
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

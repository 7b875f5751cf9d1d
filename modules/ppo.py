"""PPO (Schulman et al. 2017, arXiv:1707.06347) for language-model turns in games.

A turn is one PPO step: the state is the prompt, the action the sampled completion (its tokens), the
reward the turn's own (illegal-answer penalties) plus the seat's game return at its last turn. The
advantage of each turn comes from GAE (Schulman et al. 2016) over that seat's turns of one game, with
the value head's estimates recorded while acting; the clipped surrogate is applied per token with the
turn's advantage broadcast over its tokens.

Deviations from the paper and from the RLHF recipe of seed 002, and why:

- The value head is a linear layer on the policy's last hidden state at the prompt's last token
  (the LoRA-adapted network shared with the policy), not a separate critic network.
- The KL to the reference (the network with its adapter disabled) is a loss term per token
  (Schulman's k3 estimator by default) rather than a per-token reward penalty; with ``target_kl`` its
  coefficient adapts as in Ziegler et al. 2019 (seed 002's ``init_kl_coef`` is ``kl_coef``).
- Gradient clipping is Lightning's ``--trainer.gradient_clip_val``; PPO's inner epochs are the
  datamodule's ``ppo_epochs`` passes over each rollout's rows.
"""

from __future__ import annotations

import torch

from modules.errors import ConfigError
from modules.losses import gae
from modules.onpolicy import OnPolicyModule
from modules.policy import Policy


class PPO(OnPolicyModule):
    """PPO with a value head and GAE on the policy's own answers.

    Args:
        policy: The LLM policy (a value head is added to it).
        gamma: Discount between a seat's turns.
        gae_lambda: GAE's lambda.
        vf_coef: Weight of the value loss.
        value_clip: Clipping of the value update around the rollout's estimate (None: no clipping).
        normalize_advantages: Whiten each rollout's advantages (zero mean, unit std).
        clip_eps, kl_coef, kl_estimator, target_kl, kl_horizon, loss_aggregation, legal_nll_coef, lr, weight_decay,
            warmup_steps, lr_decay: See :class:`~modules.onpolicy.OnPolicyModule`.
    """

    uses_values = True

    def __init__(
        self,
        policy: Policy,
        gamma: float = 1.0,
        gae_lambda: float = 0.95,
        vf_coef: float = 0.5,
        value_clip: float | None = 0.2,
        normalize_advantages: bool = True,
        clip_eps: float = 0.2,
        kl_coef: float = 0.05,
        kl_estimator: str = "k3",
        target_kl: float | None = None,
        kl_horizon: float = 10000.0,
        loss_aggregation: str = "token_mean",
        legal_nll_coef: float = 0.0,
        lr: float = 1e-4,
        weight_decay: float = 0.0,
        warmup_steps: int = 0,
        lr_decay: str = "constant",
    ) -> None:
        super().__init__(
            policy,
            clip_eps=clip_eps,
            kl_coef=kl_coef,
            kl_estimator=kl_estimator,
            target_kl=target_kl,
            kl_horizon=kl_horizon,
            loss_aggregation=loss_aggregation,
            legal_nll_coef=legal_nll_coef,
            lr=lr,
            weight_decay=weight_decay,
            warmup_steps=warmup_steps,
            lr_decay=lr_decay,
        )
        if not 0 <= gamma <= 1:
            raise ConfigError(f"--model.gamma must be in [0, 1], got {gamma}")
        if not 0 <= gae_lambda <= 1:
            raise ConfigError(f"--model.gae_lambda must be in [0, 1], got {gae_lambda}")
        if vf_coef < 0:
            raise ConfigError(f"--model.vf_coef must be >= 0, got {vf_coef}")
        if value_clip is not None and value_clip <= 0:
            raise ConfigError(f"--model.value_clip must be > 0 or null, got {value_clip}")
        self.gamma, self.gae_lambda, self.vf_coef, self.value_clip = gamma, gae_lambda, vf_coef, value_clip
        self.normalize_advantages = normalize_advantages
        policy.add_value_head()

    @torch.no_grad()
    def _fill_values(self, rows: list[dict], batch_size: int = 16) -> None:
        """Rows played without the value head (e.g. reloaded from an older run) get its estimate now."""
        todo = [r for r in rows if r["value"] is None]
        policy = self.policy
        with policy.evaluating():
            for start in range(0, len(todo), batch_size):
                chunk = todo[start : start + batch_size]
                values = policy._prefill([policy.prompt_ids(r["prompt"]) for r in chunk], values=True)[3]
                for r, v in zip(chunk, values.tolist()):
                    r["value"] = v

    def assign_advantages(self, rows: list[dict]) -> dict[str, float]:
        """GAE over each (game, seat)'s turns; ``return`` = advantage + value (the value target)."""
        self.fill_old_logps(rows)
        self._fill_values(rows)
        seqs: dict[tuple, list[dict]] = {}
        for r in rows:
            seqs.setdefault((r["episode_id"], r["seat"]), []).append(r)
        seqs = {k: sorted(v, key=lambda r: r["turn"]) for k, v in seqs.items()}
        width = max(len(v) for v in seqs.values())
        shape = (len(seqs), width)
        rewards, values, mask = torch.zeros(shape), torch.zeros(shape), torch.zeros(shape, dtype=torch.bool)
        for i, seq in enumerate(seqs.values()):
            for t, r in enumerate(seq):
                rewards[i, t], values[i, t], mask[i, t] = r["reward"], r["value"], True
        adv, ret = gae(rewards, values, mask, self.gamma, self.gae_lambda)
        real = adv[mask]
        mean, std = float(real.mean()), float(real.std()) if real.numel() > 1 else 0.0
        for i, seq in enumerate(seqs.values()):
            for t, r in enumerate(seq):
                a = float(adv[i, t])
                r["advantage"] = (a - mean) / (std + 1e-8) if self.normalize_advantages and std > 0 else a
                r["return"] = float(ret[i, t])
        return {"mean": mean, "std": std, "value_mean": float(values[mask].mean())}

"""GRPO (Shao et al. 2024, DeepSeekMath, arXiv:2402.03300) on self-play games, with Dr. GRPO and RAE.

The unit GRPO compares is a *trajectory*: one seat's turns in one game, whose reward is the seat's
outcome (game return minus illegal-answer penalties). Trajectories are compared within a group (the
datamodule's ``grouping``: the seats of one game, or several games from one start), or against a
role-conditioned baseline (RAE, SPIRAL arXiv 2506.24119: a moving average of the outcome per game and
seat); with the datamodule's ``grouping: prompt`` the unit is one answer at one decision state,
judged alone, compared with the other answers sampled there. Every turn of a trajectory gets its advantage; a turn whose answer was illegal also gets its
own penalty added, so within one game an illegal answer is worse than a legal one, and a turn the
datamodule's oracle judged (``--data.oracle_reward``) gets its ``move_reward`` added (minus the move's
regret), so a blunder in a won game is still a blunder.

Advantage estimators (``advantage``):

- ``group``: GRPO's (r - mean_g) / (std_g + eps) (``scale_std: false`` is Dr. GRPO, Liu et al. 2025,
  r - mean_g; pair it with ``loss_aggregation: token_sum_constant``, Dr. GRPO's unnormalised length);
- ``rae``: r - b(game, seat), the baselines updated once per rollout and kept in the checkpoint.

With a shared reward (a cooperative game) and grouping by game, every group's rewards are equal and
every advantage is 0: the module logs ``train/zero_advantage_share`` and warns once above 90%.
Deviation from DeepSeekMath: the KL term is Schulman's k3 estimator against the adapter-disabled
network (as in the paper), but its coefficient may adapt to a target (``target_kl``).
"""

from __future__ import annotations

import torch
from lightning.pytorch.utilities import rank_zero_warn

from modules.errors import ConfigError, check_choice
from modules.losses import RoleBaseline, group_advantages
from modules.onpolicy import OnPolicyModule
from modules.policy import Policy

ADVANTAGES: tuple[str, ...] = ("group", "rae")


class GRPO(OnPolicyModule):
    """GRPO on trajectories of self-play games.

    Args:
        policy: The LLM policy.
        advantage: ``group`` (GRPO / Dr. GRPO) or ``rae`` (role-conditioned baselines).
        scale_std: Divide by the group's standard deviation (GRPO); false is Dr. GRPO.
        rae_decay: Decay of the role baselines' moving average.
        beta: Coefficient of the KL to the reference (0: no reference pass).
        clip_eps, kl_estimator, target_kl, kl_horizon, loss_aggregation, legal_nll_coef, score_objective, lr,
            weight_decay, warmup_steps, lr_decay: See :class:`~modules.onpolicy.OnPolicyModule`.
    """

    def __init__(
        self,
        policy: Policy,
        advantage: str = "group",
        scale_std: bool = True,
        rae_decay: float = 0.95,
        beta: float = 0.04,
        clip_eps: float = 0.2,
        kl_estimator: str = "k3",
        target_kl: float | None = None,
        kl_horizon: float = 10000.0,
        loss_aggregation: str = "sequence_mean",
        legal_nll_coef: float = 0.0,
        score_objective: str = "tokens",
        lr: float = 1e-4,
        weight_decay: float = 0.0,
        warmup_steps: int = 0,
        lr_decay: str = "constant",
    ) -> None:
        if beta < 0:
            raise ConfigError(f"--model.beta must be >= 0, got {beta}")
        super().__init__(
            policy,
            clip_eps=clip_eps,
            kl_coef=beta,
            kl_estimator=kl_estimator,
            target_kl=target_kl,
            kl_horizon=kl_horizon,
            loss_aggregation=loss_aggregation,
            legal_nll_coef=legal_nll_coef,
            score_objective=score_objective,
            lr=lr,
            weight_decay=weight_decay,
            warmup_steps=warmup_steps,
            lr_decay=lr_decay,
        )
        check_choice(advantage, ADVANTAGES, "--model.advantage")
        if not 0 <= rae_decay < 1:
            raise ConfigError(f"--model.rae_decay must be in [0, 1), got {rae_decay}")
        self.advantage, self.scale_std = advantage, scale_std
        self.baselines = RoleBaseline(rae_decay)
        self._warned_zero = False

    def assign_advantages(self, rows: list[dict]) -> dict[str, float]:
        """One advantage per trajectory (see the module docstring), plus each illegal turn's penalty."""
        self.fill_old_logps(rows)
        trajectories: dict[tuple, dict] = {}
        for r in rows:
            trajectories.setdefault(
                (r["episode_id"], r["seat"]),
                {"outcome": r["outcome"], "group": r["group"], "key": (r["game"], r["seat"])},
            )
        keys = list(trajectories)
        outcomes = torch.tensor([trajectories[k]["outcome"] for k in keys], dtype=torch.float64)
        if self.advantage == "rae":
            adv = self.baselines.advantages(outcomes, [trajectories[k]["key"] for k in keys])
            zero_share = 0.0
        else:
            groups = [trajectories[k]["group"] for k in keys]
            adv = group_advantages(outcomes, groups, scale_std=self.scale_std)
            zero_share = self._zero_share(outcomes, groups)
        by_key = dict(zip(keys, adv.tolist()))
        for r in rows:
            # A row judged alone (the datamodule's grouping: prompt) already has its penalty and move
            # reward in its outcome; a game's turn gets them on top of the trajectory's advantage.
            own = (
                0.0
                if r.get("unit") == "turn"
                else (r["step_reward"] if not r["legal"] else 0.0) + r.get("move_reward", 0.0)
            )
            r["advantage"] = by_key[(r["episode_id"], r["seat"])] + own
        if zero_share > 0.9 and not self._warned_zero:
            self._warned_zero = True
            if any(r.get("unit") == "turn" for r in rows):
                cause = (
                    "every answer sampled at a state was judged alike (e.g. all illegal, or all the same "
                    "move): a higher --data.temperature or --data.group_size, or --data.distinct_siblings in "
                    "score mode, gives the groups something to compare"
                )
            else:
                cause = (
                    "nothing is learned from them but per-turn terms (penalties, the oracle's move reward); a "
                    "shared reward grouped by game (a cooperative game with --data.grouping game) does this: "
                    "use grouping 'start', grouping 'prompt' with --data.sibling_judge playout, or --model.advantage rae"
                )
            rank_zero_warn(
                f"GRPO: {zero_share:.0%} of the groups have all-equal rewards, so their advantages are 0; {cause}"
            )
        trainer = self._trainer  # None when the module is used outside a Trainer
        if trainer is not None and trainer.logger is not None:
            trainer.logger.log_metrics({"train/zero_advantage_share": zero_share}, step=trainer.global_step)
        return {"zero_share": zero_share, "outcome_mean": float(outcomes.mean())}

    @staticmethod
    def _zero_share(outcomes: torch.Tensor, groups: list) -> float:
        members: dict = {}
        for value, g in zip(outcomes.tolist(), groups):
            members.setdefault(g, []).append(value)
        return sum(len(set(v)) == 1 for v in members.values()) / max(len(members), 1)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint["lightspiel_role_baselines"] = self.baselines.state_dict()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        super().on_load_checkpoint(checkpoint)
        if "lightspiel_role_baselines" in checkpoint:
            self.baselines.load_state_dict(checkpoint["lightspiel_role_baselines"])

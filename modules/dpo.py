"""DPO: Direct Preference Optimization (Rafailov et al., 2023, arXiv:2305.18290) on a LoRA policy.

Batches are lists of preference pairs (prompt, chosen, rejected as text); the module tokenizes them
with its policy. Deliberate deviations from the paper's reference implementation:
- The reference model is the policy with its adapter disabled (or a frozen snapshot adapter when the
  iterative-regeneration callback moves the reference), not a second copy of the weights.
- Each pair's prompt is run once and its key/value cache shared by chosen and rejected; vocabulary
  logits are computed only at completion positions.
- Reference log-probabilities are computed once per pair and cached until the reference changes
  (they cannot change in between), so later epochs skip the reference forward pass entirely.
"""

from __future__ import annotations

import torch

from modules.base import PolicyModule
from modules.errors import ConfigError
from modules.losses import DPO_LOSS_TYPES, dpo_loss
from modules.policy import Policy


class DPO(PolicyModule):
    """DPO on preference pairs.

    Args:
        policy: The LLM policy.
        beta: Strength of the KL-style regularisation towards the reference (the paper's beta).
        loss_type: ``sigmoid`` (DPO), ``ipo`` or ``hinge``.
        label_smoothing: Assumed label-flip probability for conservative DPO (sigmoid only), in [0, 0.5).
        lr: AdamW learning rate.
        weight_decay: AdamW weight decay.
        warmup_steps: Linear warmup steps.
    """

    def __init__(
        self,
        policy: Policy,
        beta: float = 0.1,
        loss_type: str = "sigmoid",
        label_smoothing: float = 0.0,
        lr: float = 5e-4,
        weight_decay: float = 0.0,
        warmup_steps: int = 0,
    ) -> None:
        super().__init__(policy, lr=lr, weight_decay=weight_decay, warmup_steps=warmup_steps)
        if beta <= 0:
            raise ConfigError(f"--model.beta must be > 0, got {beta}")
        if loss_type not in DPO_LOSS_TYPES:
            raise ConfigError(f"--model.loss_type must be one of {DPO_LOSS_TYPES}, got {loss_type!r}")
        if not 0.0 <= label_smoothing < 0.5:
            raise ConfigError(f"--model.label_smoothing must be in [0, 0.5), got {label_smoothing}")
        self.beta, self.loss_type, self.label_smoothing = beta, loss_type, label_smoothing
        self._ref_cache: dict[str, tuple[float, float]] = {}

    def reference_changed(self) -> None:
        """Forget cached reference log-probabilities (called when the reference moves)."""
        self._ref_cache.clear()

    def _tokens(self, batch) -> tuple[list[list[int]], list[list[list[int]]]]:
        prompts = [self.policy.prompt_ids(p.prompt) for p in batch]
        comps = [[self.policy.completion_ids(p.chosen), self.policy.completion_ids(p.rejected)] for p in batch]
        return prompts, comps

    def _reference_logps(self, batch, prompts, comps) -> torch.Tensor:  # [B, 2]
        todo = [i for i, p in enumerate(batch) if p.pair_id not in self._ref_cache]
        if todo:
            with torch.no_grad(), self.policy.reference():
                ref = self.policy.completion_logps([prompts[i] for i in todo], [comps[i] for i in todo])
            for i, row in zip(todo, ref.tolist()):
                self._ref_cache[batch[i].pair_id] = (row[0], row[1])
        return torch.tensor([self._ref_cache[p.pair_id] for p in batch], device=self.device)

    def _step(self, batch, stage: str) -> torch.Tensor:
        prompts, comps = self._tokens(batch)
        ref = self._reference_logps(batch, prompts, comps)
        logps = self.policy.completion_logps(prompts, comps)  # [B, 2]
        losses, chosen_rewards, rejected_rewards = dpo_loss(
            logps[:, 0], logps[:, 1], ref[:, 0], ref[:, 1], self.beta, self.loss_type, self.label_smoothing
        )
        loss = losses.mean()
        n = len(batch)
        self.log(f"{stage}/loss", loss, prog_bar=True, batch_size=n)
        self.log(f"{stage}/rewards_chosen", chosen_rewards.mean(), batch_size=n)
        self.log(f"{stage}/rewards_rejected", rejected_rewards.mean(), batch_size=n)
        self.log(f"{stage}/reward_accuracy", (chosen_rewards > rejected_rewards).float().mean(), batch_size=n)
        self.log(f"{stage}/reward_margin", (chosen_rewards - rejected_rewards).mean(), batch_size=n)
        self.log(f"{stage}/logps_chosen", logps[:, 0].detach().mean(), batch_size=n)
        self.log(f"{stage}/logps_rejected", logps[:, 1].detach().mean(), batch_size=n)
        return loss

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch, batch_idx: int) -> None:
        self._step(batch, "val")

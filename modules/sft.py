"""SFT: supervised fine-tuning of the LoRA policy on gold completions.

Batches are lists of :class:`~datamodules.records.SFTExample` (prompt and completion as text); the
loss is the cross-entropy on completion tokens only (:func:`modules.losses.sft_loss`): the prompt
(in the policy's chat template) and padding carry no loss. The completion ends with the end-of-turn
token, so the model also learns to stop. Prompts shared by several examples run once per batch
(:meth:`Policy.token_logps`). The chat is the policy's own (its ``system_prompt``): an example's
``system`` field (a TRL file's system message) is kept in the records but not used for training, so
train with the system prompt you will act with.
"""

from __future__ import annotations

import torch

from modules.base import PolicyModule
from modules.losses import sft_loss
from modules.policy import Policy


def sft_step(module: PolicyModule, batch, stage: str) -> torch.Tensor:
    """One SFT loss on ``batch`` (SFT examples), logged as ``{stage}/sft_loss`` with the mean
    probability of the gold tokens (``{stage}/sft_token_prob``). Shared by :class:`SFT` and by the
    DPO module's SFT stage."""
    policy = module.policy
    logps, mask, _ = policy.token_logps(
        [policy.prompt_ids(ex.prompt) for ex in batch], [policy.completion_ids(ex.completion) for ex in batch]
    )
    loss = sft_loss(logps, mask)
    n = len(batch)
    module.log(f"{stage}/sft_loss", loss, prog_bar=True, batch_size=n)
    with torch.no_grad():
        module.log(f"{stage}/sft_token_prob", (logps.exp() * mask).sum() / mask.sum(), batch_size=n)
    return loss


class SFT(PolicyModule):
    """Supervised fine-tuning with LoRA on prompt/completion examples.

    Args:
        policy: The LLM policy.
        lr: AdamW learning rate.
        weight_decay: AdamW weight decay.
        warmup_steps: Linear warmup steps.
        lr_decay: ``constant``, ``linear`` or ``cosine`` (to 0 over ``max_epochs``; see :class:`PolicyModule`).
    """

    def __init__(
        self,
        policy: Policy,
        lr: float = 5e-4,
        weight_decay: float = 0.0,
        warmup_steps: int = 0,
        lr_decay: str = "constant",
    ) -> None:
        super().__init__(policy, lr=lr, weight_decay=weight_decay, warmup_steps=warmup_steps, lr_decay=lr_decay)

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        return sft_step(self, batch, "train")

    def validation_step(self, batch, batch_idx: int) -> None:
        sft_step(self, batch, "val")

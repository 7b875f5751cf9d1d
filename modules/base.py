"""The shared base of every algorithm's LightningModule: it owns the policy, the optimizer, and what
goes into a checkpoint (the trainable weights and adapters, never the frozen base model)."""

from __future__ import annotations

import math
import re

import lightning as L
import torch

from datamodules.seeding import reseed_global, run_seed
from modules.errors import ConfigError, check_choice
from modules.policy import Policy

#: Learning-rate schedules after warmup (``PolicyModule(lr_decay=...)``).
LR_DECAYS = ("constant", "linear", "cosine")

_ADAPTER = re.compile(r"\.lora_A\.([^.]+)\.weight$")


class PolicyModule(L.LightningModule):
    """Base for SFT, DPO, PPO and GRPO modules.

    Args:
        policy: The LLM policy (model, LoRA and acting options).
        lr: AdamW learning rate.
        weight_decay: AdamW weight decay.
        warmup_steps: Linear learning-rate warmup from 0 over this many optimizer steps.
        lr_decay: ``constant``, or ``linear`` / ``cosine`` decay from ``lr`` to 0 over the run's
            ``max_epochs``. Progress is counted in epochs (each epoch's batches spread evenly over
            it), so it holds when iterations bring data sets of different sizes, and a resumed run
            continues the schedule where it stopped (over the resumed run's ``max_epochs``: raising
            it on resume stretches the schedule, and the rate rises again). Each parameter group's
            own rate is scaled. The rate is logged as ``train/lr``.
    """

    def __init__(
        self,
        policy: Policy,
        lr: float = 1e-4,
        weight_decay: float = 0.0,
        warmup_steps: int = 0,
        lr_decay: str = "constant",
    ) -> None:
        super().__init__()
        if lr <= 0:
            raise ConfigError(f"--model.lr must be > 0, got {lr}")
        if warmup_steps < 0:
            raise ConfigError(f"--model.warmup_steps must be >= 0, got {warmup_steps}")
        check_choice(lr_decay, LR_DECAYS, "--model.lr_decay")
        self.policy = policy
        self.lr, self.weight_decay, self.warmup_steps = lr, weight_decay, warmup_steps
        self.lr_decay = lr_decay
        # Checkpoints hold only the trainable weights, so the frozen base's keys are absent on load.
        self.strict_loading = False

    def on_train_batch_start(self, batch, batch_idx: int) -> None:
        # Dropout and any sampling in a training step draw from a generator seeded by the run's seed,
        # the epoch, the batch and the rank: a resumed run trains as the uninterrupted one did, however
        # often Lightning drew from torch's generator in between (a DataLoader iterator takes a seed
        # from it each time Lightning builds one, and a resumed run builds one fewer), and two ranks
        # draw different masks.
        reseed_global(run_seed(), self.current_epoch, batch_idx, self.global_rank, "train")
        if self.lr_decay != "constant":
            factor = self._decay(batch_idx) * min(1.0, (self.global_step + 1) / max(1, self.warmup_steps))
            optimizers = self.optimizers(use_pl_optimizer=False)
            for optimizer in optimizers if isinstance(optimizers, list) else [optimizers]:
                for group in optimizer.param_groups:
                    group["lr"] = group.setdefault("initial_lr", group["lr"]) * factor
            self.log("train/lr", self.lr * factor, batch_size=1)

    def setup(self, stage: str) -> None:
        # In setup, so a bad option stops the run before the callbacks' first tournament.
        if stage != "fit" or self.lr_decay == "constant":
            return
        epochs = self.trainer.max_epochs
        if epochs is None or epochs < 1:
            raise ConfigError(
                f"--model.lr_decay {self.lr_decay} decays over the run's epochs: set --trainer.max_epochs "
                f"(got {epochs})"
            )

    def _decay(self, batch_idx: int) -> float:
        """The decay factor at batch ``batch_idx`` of the current epoch: 1 at the run's start, 0 at its end."""
        batches = self.trainer.num_training_batches
        within = batch_idx / batches if 0 < batches < math.inf else 0.0
        progress = min(1.0, (self.current_epoch + within) / self.trainer.max_epochs)
        if self.lr_decay == "linear":
            return 1.0 - progress
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    def configure_optimizers(self):
        params = [p for p in self.parameters() if p.requires_grad]
        # PyTorch's fused AdamW on the CPU: one kernel over all adapter tensors instead of about ten
        # small ops on each of the 420 LoRA matrices (SmolLM2, all linear layers): 3.6 ms a step
        # against 18.8 (stop 36), the same update up to rounding. Not on a GPU: there the default
        # already batches its ops, and fp16 mixed precision cannot clip a fused optimizer's
        # gradients. A run resumed from a checkpoint keeps the optimizer settings saved in it.
        fused = bool(params) and all(p.device.type == "cpu" and p.is_floating_point() for p in params)
        optimizer = torch.optim.AdamW(params, lr=self.lr, weight_decay=self.weight_decay, fused=fused or None)
        if not self.warmup_steps or self.lr_decay != "constant":  # a decay sets the rate each step, warmup included
            return optimizer
        warmup = self.warmup_steps
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / warmup))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def _kept_keys(self) -> set[str]:
        trainable = {name for name, p in self.named_parameters() if p.requires_grad}
        adapters = {name for name in self.state_dict() if ".lora_" in name}
        return trainable | adapters

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        kept = self._kept_keys()
        checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if k in kept}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        state = checkpoint["state_dict"]
        # Frozen adapters beside the trained one (the DPO reference, the tournament's snapshot pool)
        # are saved with it; they are made before the weights load.
        for name in sorted({m.group(1) for k in state if (m := _ADAPTER.search(k))} - {"default"}):
            self.policy.ensure_adapter(name)
        own = self.state_dict()
        mismatched = sorted(k for k, v in state.items() if k in own and own[k].shape != v.shape)
        if mismatched:
            k = mismatched[0]
            raise ConfigError(
                f"checkpoint does not match the configured model: {k} has shape {tuple(state[k].shape)} in the "
                f"checkpoint but {tuple(own[k].shape)} here; was it written with other LoRA options (lora_r)?"
            )
        extra = sorted(k for k in state if ".lora_" in k and k not in own)
        if extra:
            raise ConfigError(
                f"checkpoint does not match the configured model: {len(extra)} adapter weights have no "
                f"place here (first: {extra[0]}); was it written with other LoRA options (lora_layers, "
                "target_modules)?"
            )
        missing = sorted(k for k in self._kept_keys() if k not in state)
        if missing:
            raise ConfigError(
                f"checkpoint does not match the configured model: {len(missing)} trainable weights are "
                f"missing (first: {missing[0]}); was it written with other LoRA options (lora_layers, "
                "target_modules)?"
            )

"""Iterative regeneration: every K epochs, fresh episodes and pairs from the newest policy.

``IterationSchedule`` is the plain logic (tested without a Trainer); ``IterativeRegeneration`` adapts
it to Lightning. The iteration number lives in the checkpoint, so ``--ckpt_path last`` continues the
loop at the saved iteration (the datamodule then reuses that iteration's episodes on disk and
rebuilds its pairs from them).
"""

from __future__ import annotations

import lightning as L
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn

from datamodules.protocols import IterativeData, ReferenceAware, require
from modules.errors import ConfigError


class IterationSchedule:
    """Counts iterations; one iteration is ``every_n_epochs`` training epochs on one data set."""

    def __init__(self, every_n_epochs: int = 1) -> None:
        if every_n_epochs < 1:
            raise ConfigError(f"IterativeRegeneration: every_n_epochs must be >= 1, got {every_n_epochs}")
        self.every_n_epochs = every_n_epochs
        self.iteration = 0

    def should_advance(self, finished_epoch: int) -> tuple[bool, str]:
        """Whether to start a new iteration after 0-based epoch ``finished_epoch``, and why."""
        if (finished_epoch + 1) % self.every_n_epochs == 0:
            return (
                True,
                f"epoch {finished_epoch} closes iteration {self.iteration} ({self.every_n_epochs} epochs each)",
            )
        left = self.every_n_epochs - (finished_epoch + 1) % self.every_n_epochs
        return False, f"iteration {self.iteration} has {left} epoch(s) to go"

    def advance(self) -> int:
        self.iteration += 1
        return self.iteration

    def state_dict(self) -> dict:
        return {"iteration": self.iteration, "every_n_epochs": self.every_n_epochs}

    def load_state_dict(self, state: dict) -> None:
        self.iteration = int(state["iteration"])
        saved = int(state.get("every_n_epochs", self.every_n_epochs))
        if saved != self.every_n_epochs:
            rank_zero_warn(
                f"IterativeRegeneration: the checkpoint used every_n_epochs={saved}, this run "
                f"{self.every_n_epochs}; iterations continue from {self.iteration} at the new period"
            )


class IterativeRegeneration(L.Callback):
    """Regenerates the datamodule's episodes and pairs from the current policy every K epochs.

    Args:
        every_n_epochs: Epochs trained on each iteration's pairs.
        update_reference: Move the DPO reference to the current policy at each new iteration
            (iterative DPO); otherwise the reference stays the base model.
    """

    def __init__(self, every_n_epochs: int = 1, update_reference: bool = False) -> None:
        self.schedule = IterationSchedule(every_n_epochs)
        self.update_reference = update_reference

    # One regeneration schedule per Trainer: the default state key (the class name) is kept so
    # checkpoints stay loadable when its options change (the period is checked on load instead).

    @property
    def iteration(self) -> int:
        return self.schedule.iteration

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if self.update_reference and getattr(pl_module, "reference_free", False):
            raise ConfigError(
                "IterativeRegeneration: update_reference is true, but the model has no reference to move "
                "(--model.init_args.reference_free is true); set one of them to false"
            )
        require(trainer.datamodule, IterativeData, "IterativeRegeneration", "a datamodule")
        # New data must reach the loop: rebuild the dataloaders each epoch (cheap: pairs are cached).
        trainer.reload_dataloaders_every_n_epochs = 1

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        trainer.datamodule.set_iteration(self.iteration)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        advance, reason = self.schedule.should_advance(trainer.current_epoch)
        if not advance:
            return
        rank_zero_info(f"IterativeRegeneration: {reason}; fresh episodes and pairs come next")
        iteration = self.schedule.advance()
        if self.update_reference:
            pl_module.policy.snapshot_reference()
            if isinstance(pl_module, ReferenceAware):
                pl_module.reference_changed()
        trainer.datamodule.set_iteration(iteration)
        pl_module.log("train/iteration", float(iteration))

    def state_dict(self) -> dict:
        return self.schedule.state_dict()

    def load_state_dict(self, state_dict: dict) -> None:
        self.schedule.load_state_dict(state_dict)

"""When an evaluation callback runs: before the first update (once per run, remembered in its state)
and after every K-th training epoch and the last one. The tournament and the reasoning evaluation
share it."""

from __future__ import annotations

import lightning as L


class EvaluationSchedule(L.Callback):
    """Calls ``self.evaluate(trainer, pl_module, label)`` with ``"start"`` before training (when
    ``self.at_start`` and no ``"start"`` entry is in ``self.history``) and ``"epochNNN"`` after every
    ``self.every_n_epochs``-th epoch and after the last one."""

    at_start: bool = True
    every_n_epochs: int = 1
    history: list[dict]

    def evaluate(self, trainer: L.Trainer, pl_module: L.LightningModule, label: str) -> dict:
        raise NotImplementedError

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.at_start and not any(h["label"] == "start" for h in self.history):
            self.evaluate(trainer, pl_module, "start")

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        epoch = trainer.current_epoch
        last = trainer.max_epochs is not None and epoch + 1 >= trainer.max_epochs
        if (epoch + 1) % self.every_n_epochs == 0 or last:
            self.evaluate(trainer, pl_module, f"epoch{epoch:03d}")

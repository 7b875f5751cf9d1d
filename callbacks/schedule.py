"""When an evaluation callback runs: before the first update (once per run, remembered in its state)
and after every K-th training epoch and the last one, also when the run stops before ``max_epochs``
(``--trainer.max_time``, early stopping). The tournament and the reasoning evaluation share it."""

from __future__ import annotations

import lightning as L


class EvaluationSchedule(L.Callback):
    """Calls ``self.evaluate(trainer, pl_module, label)`` with ``"start"`` before training (when
    ``self.at_start`` and no ``"start"`` entry is in ``self.history``) and ``"epochNNN"`` after every
    ``self.every_n_epochs``-th epoch and after the last one: the last by ``max_epochs``, or, when the
    run stops early (``max_time``, early stopping), the last epoch trained (evaluated when training
    ends, if its epoch end did not)."""

    at_start: bool = True
    every_n_epochs: int = 1
    history: list[dict]

    def evaluate(self, trainer: L.Trainer, pl_module: L.LightningModule, label: str) -> dict:
        raise NotImplementedError

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.at_start and not any(h["label"] == "start" for h in self.history):
            self.evaluate(trainer, pl_module, "start")

    _epoch_trained: int | None = None
    _epoch_evaluated: int | None = None

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        epoch = trainer.current_epoch
        self._epoch_trained = epoch
        # max_epochs is -1 when only max_time or max_steps bounds the run: no epoch is known to be last.
        last = (trainer.max_epochs or 0) > 0 and epoch + 1 >= trainer.max_epochs
        if (epoch + 1) % self.every_n_epochs == 0 or last or trainer.should_stop:
            self._evaluate_epoch(trainer, pl_module, epoch)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # A run stopped before max_epochs whose stop was decided after this callback's epoch end
        # (a timer or early stopping running later in the callback list) still ends evaluated. That
        # evaluation comes after the epoch's checkpoint was written: the report files hold it, the
        # checkpoint's callback state does not (a run resumed from it evaluates its next epochs as usual).
        if self._epoch_trained is not None and self._epoch_evaluated != self._epoch_trained:
            self._evaluate_epoch(trainer, pl_module, self._epoch_trained)

    def _evaluate_epoch(self, trainer: L.Trainer, pl_module: L.LightningModule, epoch: int) -> None:
        self._epoch_evaluated = epoch
        self.evaluate(trainer, pl_module, f"epoch{epoch:03d}")

"""lightspiel's command line: LightningCLI over the project's modules and datamodules.

``python -m cli fit --config configs/quickstart.yaml``. The run folder is ``--trainer.default_root_dir``:
unless configured otherwise it receives the TensorBoard events (``tensorboard/``), the checkpoints
(``checkpoints/``, with ``last.ckpt`` so ``--ckpt_path last`` resumes), and whatever the datamodule
and callbacks write (episodes, pairs, reports).
"""

from __future__ import annotations

import sys
from pathlib import Path

from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.loggers import TensorBoardLogger

import callbacks  # noqa: F401  (makes callbacks.* resolvable by short name)
import datamodules  # noqa: F401
import envs  # noqa: F401
from modules.base import PolicyModule
from modules.errors import LightspielError

DEFAULT_RUN_DIR = "runs/lightspiel"


class LightspielCLI(LightningCLI):
    """LightningCLI with lightspiel's run-folder defaults (TensorBoard logger, resumable checkpoints)."""

    def _instantiate_trainer(self, config: dict, extra_callbacks: list):
        config = dict(config)
        root = Path(config.get("default_root_dir") or DEFAULT_RUN_DIR)
        config["default_root_dir"] = str(root)
        if config.get("logger") in (None, True):
            config["logger"] = TensorBoardLogger(save_dir=str(root), name="tensorboard", version="")
        configured = list(config.get("callbacks") or []) + list(extra_callbacks)
        if config.get("enable_checkpointing", True) is not False and not any(
            isinstance(c, ModelCheckpoint) for c in configured
        ):
            extra_callbacks = [
                *extra_callbacks,
                ModelCheckpoint(dirpath=root / "checkpoints", filename="{epoch:03d}-{step}", save_last=True),
            ]
        return super()._instantiate_trainer(config, extra_callbacks)


def cli_main(args: list[str] | None = None, run: bool = True) -> LightspielCLI | None:
    """Entry point; tests call ``cli_main(["fit", "--config", path, "--trainer.max_steps=2"])``."""
    try:
        return LightspielCLI(
            PolicyModule,
            None,
            subclass_mode_model=True,
            subclass_mode_data=True,
            save_config_kwargs={"overwrite": True},
            args=args,
            run=run,
            auto_configure_optimizers=False,
        )
    except Exception as err:
        user_error = _user_error(err)
        if user_error is None:
            raise
        print(f"lightspiel: error: {user_error}", file=sys.stderr)
        raise SystemExit(2) from None


def _user_error(err: BaseException) -> LightspielError | None:
    """The user mistake behind an exception, if any: jsonargparse wraps errors raised while it
    instantiates classes, keeping ours in the exception's context chain."""
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        if isinstance(current, LightspielError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None

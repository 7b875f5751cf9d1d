"""lightspiel's LightningCLI over the project's modules and datamodules (``fit`` and the other
LightningCLI subcommands; :mod:`cli` dispatches the other verbs).

``python -m cli fit --config configs/quickstart.yaml``. The run folder is ``--trainer.default_root_dir``:
unless configured otherwise it receives the TensorBoard events (``tensorboard/``), the checkpoints
(``checkpoints/``, with ``last.ckpt`` so ``--ckpt_path last`` resumes), and whatever the datamodule
and callbacks write (episodes, pairs, reports).

Resuming: ``--ckpt_path last`` resumes from the run folder's last checkpoint and is an error when
there is none (a misspelt run folder would otherwise start a new run unnoticed); ``--ckpt_path
last-if-any`` resumes when there is one and starts a new run otherwise.

User mistakes are one line on stderr, ``lightspiel: error: ...``, exit status 2, found before any
model loads or anything is written: unknown options (with the closest valid names), wrong types
(the option, the value, the expected type), an unknown env id, a datamodule option out of range
or misspelt (its constructor's own checks, run once before the model), a config file that is empty or not
YAML (file, line, column), ``--ckpt_path last`` with nothing to resume. ``--help`` is Lightning's.
"""

from __future__ import annotations

import argparse
import importlib
import re
import sys
from pathlib import Path

from jsonargparse import Namespace
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.loggers import TensorBoardLogger

import callbacks  # noqa: F401  (makes callbacks.* resolvable by short name)
import datamodules  # noqa: F401
import envs  # noqa: F401
from cli.diagnose import check_config_files, explain_parse_error
from modules.base import PolicyModule
from modules.errors import ConfigError, LightspielError, did_you_mean

DEFAULT_RUN_DIR = "runs/lightspiel"
#: ``--ckpt_path last-if-any``: resume from the last checkpoint if the run folder has one, else start.
LAST_IF_ANY = "last-if-any"


class LightspielCLI(LightningCLI):
    """LightningCLI with lightspiel's run-folder defaults (TensorBoard logger, resumable checkpoints)
    and one-line errors for user mistakes, raised before anything is instantiated."""

    def parse_arguments(self, parser, args) -> None:
        if not isinstance(args, (dict, Namespace)):
            check_config_files(sys.argv[1:] if args is None else list(args))
        parsers = [parser, *getattr(self, "_subcommand_parsers", {}).values()]
        saved = [p.exit_on_error for p in parsers]
        for p in parsers:
            p.exit_on_error = False  # raise ArgumentError instead of printing the usage
        try:
            super().parse_arguments(parser, args)
        except argparse.ArgumentError as err:
            raise ConfigError(explain_parse_error(err, self._subcommand_parser(args))) from None
        finally:
            for p, value in zip(parsers, saved):
                p.exit_on_error = value
        # What parsing cannot see, checked before anything is seeded, loaded or written.
        subcommand = self.config.get("subcommand")
        config = self.config[subcommand] if subcommand else self.config
        _check_env(config)
        _check_data(config)
        if subcommand:
            _resolve_ckpt_path(config)

    def _subcommand_parser(self, args):
        subparsers = getattr(self, "_subcommand_parsers", {})
        argv = sys.argv[1:] if args is None else args
        name = next((a for a in argv if isinstance(a, str) and a in subparsers), None)
        return subparsers.get(name, self.parser)

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


def _check_env(config: Namespace) -> None:
    """An unknown env id (or game, or env argument) in ``data``, said before the model loads."""
    data = config.get("data")
    if not isinstance(data, Namespace):
        return
    init = data.get("init_args")
    init = init if isinstance(init, Namespace) else data
    env_id = init.get("env")
    if not isinstance(env_id, str):
        return
    import gymnasium

    from datamodules.rollout import make_env

    option = "data.init_args.env" if init is not data else "data.env"
    if env_id not in gymnasium.registry:
        ours = [k for k in gymnasium.registry if k.startswith("lightspiel/")]
        raise ConfigError(
            f"{option}: unknown env id {env_id!r} (registered: {', '.join(ours)}){did_you_mean(env_id, ours)}"
        )
    env_kwargs = init.get("env_kwargs") or {}
    if isinstance(env_kwargs, Namespace):
        env_kwargs = env_kwargs.as_dict()
    try:
        make_env(env_id, dict(env_kwargs)).close()
    except (LightspielError, ValueError, TypeError) as err:
        message = re.sub(r"^env '[^']*': ", "", str(err))
        raise ConfigError(f"{option}_kwargs for {env_id}: {message}") from None


def _check_data(config: Namespace) -> None:
    """The option checks of one of lightspiel's datamodules (ranges, choices, files), said before the
    model loads: their constructors validate and store, and do no slow work, so one is built here
    and dropped. Errors other than a user mistake are left to the real instantiation."""
    data = config.get("data")
    class_path = data.get("class_path") if isinstance(data, Namespace) else None
    if not isinstance(class_path, str) or not class_path.startswith("datamodules."):
        return
    module, _, name = class_path.rpartition(".")
    init = data.get("init_args")
    try:
        cls = getattr(importlib.import_module(module), name)
        cls(**(init.as_dict() if isinstance(init, Namespace) else {}))
    except ConfigError:
        raise
    except Exception:  # noqa: BLE001 (not ours to judge here: instantiation reports it in full)
        return


def _resolve_ckpt_path(config: Namespace) -> None:
    """``last``: there must be a last checkpoint in the run folder. ``last-if-any``: ``last`` if there
    is one, else no checkpoint (a new run)."""
    ckpt_path = config.get("ckpt_path")
    if ckpt_path not in ("last", LAST_IF_ANY):
        return
    folders = _checkpoint_dirs(config.get("trainer") or Namespace())
    if folders is None:  # a checkpoint folder we cannot predict: leave the search to Lightning
        config["ckpt_path"] = "last"
        return
    if any(_is_last(p) for folder in folders if folder.is_dir() for p in folder.iterdir()):
        config["ckpt_path"] = "last"
    elif ckpt_path == LAST_IF_ANY:
        config["ckpt_path"] = None
    else:
        searched = " or ".join(str(f) for f in folders)
        raise ConfigError(
            f"--ckpt_path last: no last checkpoint in {searched} to resume from "
            f"(check --trainer.default_root_dir; --ckpt_path {LAST_IF_ANY} resumes only if there is one)"
        )


def _is_last(path: Path) -> bool:
    return path.suffix == ModelCheckpoint.FILE_EXTENSION and bool(
        re.match(rf"^{ModelCheckpoint.CHECKPOINT_NAME_LAST}(-(\d+))?", path.stem)
    )


def _checkpoint_dirs(trainer: Namespace) -> list[Path] | None:
    """Where the run's ModelCheckpoints write, as :meth:`LightspielCLI._instantiate_trainer` sets them
    up; ``None`` where that depends on a configured logger."""
    root = Path(trainer.get("default_root_dir") or DEFAULT_RUN_DIR)
    callbacks_config = trainer.get("callbacks") or []
    if not isinstance(callbacks_config, list):
        callbacks_config = [callbacks_config]
    folders = []
    for cb in callbacks_config:
        if not isinstance(cb, Namespace) or not _is_model_checkpoint(cb.get("class_path")):
            continue
        dirpath = (cb.get("init_args") or Namespace()).get("dirpath")
        if dirpath:
            folders.append(Path(dirpath))
        elif trainer.get("logger") in (None, True):
            folders.append(root / "tensorboard" / "checkpoints")  # our logger: root/tensorboard, version ""
        elif trainer.get("logger") is False:
            folders.append(root / "checkpoints")
        else:
            return None
    return folders or [root / "checkpoints"]


def _is_model_checkpoint(class_path: object) -> bool:
    if not isinstance(class_path, str):
        return False
    module, _, name = class_path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError):
        return False
    return isinstance(cls, type) and issubclass(cls, ModelCheckpoint)


def lightning_main(args: list[str] | None = None, run: bool = True) -> LightspielCLI | None:
    """LightningCLI's subcommands (``fit``, ``validate``, ...) with one-line user errors."""
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
        report_user_error(err)
        raise


def report_user_error(err: BaseException) -> None:
    """If a user mistake is behind ``err``, print it as one line and exit with status 2."""
    user_error = _user_error(err)
    if user_error is None:
        return
    message = "; ".join(line.strip() for line in str(user_error).splitlines() if line.strip())
    print(f"lightspiel: error: {message}", file=sys.stderr)
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

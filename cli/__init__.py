"""lightspiel's command line: ``python -m cli <verb>``.

- ``fit`` (and LightningCLI's other subcommands): :mod:`cli.main`, LightningCLI over the project's
  modules and datamodules (``python -m cli fit --config configs/quickstart.yaml``);
- ``rollout``, ``pairs``, ``split``, ``tournament``: seed 000's step-by-step verbs (:mod:`cli.verbs`);
- ``export``: a checkpoint as a peft adapter folder and a merged model (:mod:`cli.export`).

Every verb reports a user mistake as one line, ``lightspiel: error: ...``, exit status 2, before any
slow work.
"""

from __future__ import annotations

import importlib
import os
import sys

# MKL (torch's CPU BLAS) otherwise picks its kernel paths by run-time conditions, so the same
# matrix product can differ in its last bits from one call to the next; with this, results repeat
# and a resumed run is bitwise the uninterrupted one (with ``trainer.deterministic: true``). It must
# be set before torch loads MKL; measured here it costs nothing (a 1600x576x1536 fp32 product at the same speed).
os.environ.setdefault("MKL_CBWR", "AUTO,STRICT")


def _run_as_module() -> bool:
    """Whether this process is ``python [options] -m cli ...`` (not a test, a library import, or a
    Lightning DDP child, which runs ``-m cli.__main__`` and inherits the parent's environment).
    While ``-m`` imports the package, ``sys.argv[0]`` is ``"-m"``."""
    if sys.argv[:1] != ["-m"]:
        return False
    argv = list(getattr(sys, "orig_argv", []))
    for i, arg in enumerate(argv[1:], 1):
        if arg == "-m":
            return argv[i + 1 : i + 2] == ["cli"]
        if arg.startswith("-m"):
            return arg == "-mcli"
    return False


# glibc's malloc with transparent huge pages: about 10% off a DPO step on the CPU, fewer page faults
# (modules.memory.huge_page_environ says when and why). glibc reads it only at start-up, so the
# command restarts itself once, before anything heavy is imported.
if _run_as_module():
    from modules.memory import huge_page_environ

    _env = huge_page_environ(dict(os.environ))
    if _env is not None:
        sys.stdout.flush()
        sys.stderr.flush()
        os.execve(sys.executable, sys.orig_argv, _env)

from cli.main import LightspielCLI, lightning_main, report_user_error  # noqa: E402  (after the restart above)

#: Verbs beside LightningCLI's (fit, validate, ...): name -> "module:function(argv) -> exit status".
VERBS = {
    "export": "cli.export:main",
    "rollout": "cli.verbs:rollout",
    "pairs": "cli.verbs:pairs",
    "split": "cli.verbs:split",
    "tournament": "cli.verbs:tournament",
}

__all__ = ["VERBS", "LightspielCLI", "cli_main"]


def cli_main(args: list[str] | None = None, run: bool = True) -> LightspielCLI | None:
    """Entry point; tests call ``cli_main(["fit", "--config", path, "--trainer.max_steps=2"])``."""
    argv = sys.argv[1:] if args is None else list(args)
    if not (argv and argv[0] in VERBS):
        return lightning_main(args, run)
    module, _, function = VERBS[argv[0]].partition(":")
    try:
        status = getattr(importlib.import_module(module), function)(argv[1:])
    except Exception as err:
        report_user_error(err)
        raise
    if status:
        raise SystemExit(status)
    return None

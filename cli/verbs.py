"""Seed 000's step-by-step verbs beside ``fit``: ``rollout``, ``pairs``, ``split`` and ``tournament``.

Each reads and writes the same JSONL records ``fit`` does, validates its inputs before any slow work
(one ``lightspiel: error:`` line, exit 2), writes its output whole (temporary file, renamed), and
prints its acceptance figures::

    python -m cli rollout --env lightspiel/RepeatedPoker-v0 --agent heuristic --games 200 --out logs/heuristic.jsonl
    python -m cli rollout --env lightspiel/RepeatedPoker-v0 --agent llm --games 100 --mode generate \\
        --out logs/llm.jsonl --require parse_rate>=0.98 --require illegal_rate<=0.01
    python -m cli pairs --episodes logs/llm.jsonl --strategy margin --margin 0.1 --out pairs/all.jsonl
    python -m cli split --pairs pairs/all.jsonl --eval_ratio 0.1 --seed 0 --out pairs/
    python -m cli tournament --env lightspiel/RepeatedPoker-v0 --opponent heuristic --games 100 \
        --config C --ckpt_path runs/X/checkpoints/last.ckpt --out reports/after.json \
        --baseline reports/before.json --max_illegal_increase 0.01

``rollout --agent llm`` plays the embedded model, a hub name or folder (``--model``), or a trained
checkpoint (``--config`` + ``--ckpt_path``) in every seat (self-play; ``--opponent`` seats the env's
built-in opponent instead); ``--agent random|heuristic|mcts|minimax`` has the built-in agent play
every seat. A failed ``--require`` exits with status 1 after writing the episodes. ``tournament``
plays an LLM against a built-in opponent on held-out seeds (both seats), writes a JSON report
(win/draw/loss, mean return: the average final bankroll change in repeated poker, illegal and parse
rates, each with its interval), and with ``--baseline`` prints the differences and exits 1 when the
illegal rate rose by more than ``--max_illegal_increase`` (seed 000's rejection rule).
"""

from __future__ import annotations

import argparse
import json
import operator
import re
import sys
import time
from pathlib import Path

from modules.errors import ConfigError


class VerbParser(argparse.ArgumentParser):
    """argparse whose mistakes are lightspiel's one-line errors (not the usage block and exit)."""

    def error(self, message: str):
        raise ConfigError(f"{self.prog}: {message} (see --help)")


_REQUIRE = re.compile(r"^(\w+)\s*(>=|<=|>|<)\s*([0-9.eE+-]+)$")
_OPS = {">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt}


def _json_option(text: str | None, option: str) -> dict:
    if text is None:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise ConfigError(f"{option}: not valid JSON ({err.msg}): {text!r}") from None
    if not isinstance(value, dict):
        raise ConfigError(f"{option}: expected a JSON object, got {text!r}")
    return value


def _requirements(items: list[str]) -> list[tuple[str, str, float]]:
    out = []
    for item in items:
        m = _REQUIRE.match(item.strip())
        if not m:
            raise ConfigError(f"--require {item!r}: expected <metric><op><number>, e.g. parse_rate>=0.98")
        try:
            out.append((m.group(1), m.group(2), float(m.group(3))))
        except ValueError:
            raise ConfigError(f"--require {item!r}: {m.group(3)!r} is not a number") from None
    return out


def load_trained_module(config: str, ckpt_path: str):
    """The config's LightningModule with the checkpoint's trained weights loaded."""
    import torch

    from cli.main import lightning_main

    if not Path(config).is_file():
        raise ConfigError(f"--config: no such file {config!r}")
    if not Path(ckpt_path).is_file():
        raise ConfigError(f"--ckpt_path: no such file {ckpt_path!r} (expected a lightspiel .ckpt)")
    try:
        checkpoint = torch.load(ckpt_path, map_location="cpu", weights_only=False)
    except Exception as err:  # a file that is not a torch checkpoint
        raise ConfigError(
            f"--ckpt_path {ckpt_path!r}: not a readable checkpoint ({type(err).__name__})"
        ) from None
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise ConfigError(f"--ckpt_path {ckpt_path!r}: not a Lightning checkpoint (no state_dict)")
    trimmed = _without_run_keys(config)
    try:
        module = lightning_main(["--config", trimmed, "--trainer.logger=false"], run=False).model
    finally:
        if trimmed != config:
            Path(trimmed).unlink(missing_ok=True)
    module.on_load_checkpoint(checkpoint)  # checks shapes and missing trainable weights, one clear error
    module.load_state_dict(checkpoint["state_dict"], strict=False)
    return module


#: What building a module from a config reads; a config saved by ``fit`` has more (ckpt_path, ...).
_MODULE_KEYS = ("seed_everything", "trainer", "model", "data")


def _without_run_keys(config: str) -> str:
    """The config without what only a ``fit`` run reads: the config ``fit`` saves in the run folder
    (every command-line override included) also has ``ckpt_path``, ``weights_only``, ..., which
    building the module rejects."""
    import tempfile

    import yaml

    try:
        data = yaml.safe_load(Path(config).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return config  # the CLI's own check reports it with file, line and column
    if not isinstance(data, dict) or set(data) <= set(_MODULE_KEYS):
        return config
    fd, path = tempfile.mkstemp(prefix="lightspiel-config-", suffix=".yaml")
    with open(fd, "w", encoding="utf-8") as fh:
        yaml.safe_dump({k: v for k, v in data.items() if k in _MODULE_KEYS}, fh)
    return path


def _add_model_args(p: argparse.ArgumentParser, what: str) -> None:
    """The options that name the language model a verb plays: a model, or a checkpoint and its config."""
    p.add_argument("--model", help="hub name or local folder (default: the embedded SmolLM2-135M)")
    p.add_argument("--config", help="with --ckpt_path: the config a checkpoint was trained with")
    p.add_argument("--ckpt_path", help=f"a lightspiel checkpoint to {what}")
    p.add_argument("--dtype", default="auto")
    p.add_argument("--max_new_tokens", type=int, default=16)
    p.add_argument("--mode", default="generate", help="score, constrained or generate")


def _policy(args, prefix: str = ""):
    """The policy the options name (``prefix="opponent_"``: the opponent's options)."""
    ckpt, config, model = (getattr(args, f"{prefix}{k}") for k in ("ckpt_path", "config", "model"))
    if ckpt:
        if not config:
            raise ConfigError(
                f"--{prefix}ckpt_path needs --{prefix}config (the config the checkpoint was trained with)"
            )
        return load_trained_module(config, ckpt).policy
    from modules.policy import Policy

    return Policy(model=model, dtype=args.dtype, max_new_tokens=args.max_new_tokens)


def rollout(argv: list[str]) -> int:
    from datamodules.players import AgentPlayer, PolicyPlayer
    from datamodules.records import write_jsonl_atomic
    from datamodules.rollout import RolloutEngine, make_env
    from envs import AGENT_NAMES
    from modules.errors import check_choice
    from modules.modes import check_mode

    p = VerbParser(prog="python -m cli rollout", description="Play N games and write the episodes.")
    p.add_argument("--env", required=True, help="a registered env id, e.g. lightspiel/RepeatedPoker-v0")
    p.add_argument("--env_kwargs", help='env options as JSON, e.g. \'{"illegal_rule": "random"}\'')
    p.add_argument("--agent", default="llm", help=f"llm or a built-in agent: {', '.join(AGENT_NAMES)}")
    p.add_argument(
        "--opponent", help="seat the env's built-in opponent (random, mcts, heuristic, ...) against the llm"
    )
    _add_model_args(p, "play")
    p.add_argument("--temperature", type=float, default=None)
    p.add_argument("--greedy", action="store_true")
    p.add_argument("--games", type=int, default=100)
    p.add_argument("--seed", type=int, default=0, help="first seed")
    p.add_argument("--num_envs", type=int, default=16)
    p.add_argument("--out", required=True, help="episodes JSONL to write")
    p.add_argument("--require", action="append", default=[], help="e.g. parse_rate>=0.98 (repeatable)")
    args = p.parse_args(argv)
    check_choice(args.agent, ("llm", *AGENT_NAMES), "--agent")
    check_mode(args.mode, "--mode")
    requirements = _requirements(args.require)
    if args.games < 1 or args.num_envs < 1:
        raise ConfigError(f"--games and --num_envs must be >= 1, got {args.games}, {args.num_envs}")
    env_kwargs = _json_option(args.env_kwargs, "--env_kwargs")
    if args.opponent:
        env_kwargs["opponent"] = args.opponent
    make_env(args.env, env_kwargs).close()  # a bad id or option: now, before the model loads
    engine = RolloutEngine(args.env, env_kwargs, min(args.num_envs, args.games))
    seeds = [args.seed + i for i in range(args.games)]
    start = time.perf_counter()
    if args.agent == "llm":
        policy = _policy(args)
        if args.opponent:
            result = engine.play(
                policy, seeds, mode=args.mode, greedy=args.greedy, temperature=args.temperature
            )
        else:
            player = PolicyPlayer(policy)
            n = engine.envs[0].unwrapped.num_players
            result = engine.play(None, seeds, mode=args.mode, greedy=args.greedy,
                                 temperature=args.temperature, seats=lambda _i: [player] * n)  # fmt: skip
    else:
        agent = AgentPlayer(args.agent)
        n = engine.envs[0].unwrapped.num_players
        result = engine.play(None, seeds, seats=lambda _i: [agent] * n)
    seconds = time.perf_counter() - start
    write_jsonl_atomic(args.out, result.episodes)
    metrics = dict(result.metrics)
    if args.agent != "llm":  # no learner seat: the answer figures are over every turn of the log
        turns = [t for e in result.episodes for t in e.turns]
        metrics["parse_rate"] = sum(t.parsed for t in turns) / max(1, len(turns))
        metrics["illegal_rate"] = sum(not t.legal for t in turns) / max(1, len(turns))
        metrics["mean_length"] = len(turns) / max(1, len(result.episodes))
    return _report(metrics, len(result.episodes), seconds, args.out, requirements)


def _report(metrics: dict, games: int, seconds: float, out: str, requirements) -> int:
    shown = {k: round(v, 4) for k, v in metrics.items() if not k.endswith(("_low", "_high"))}
    print(
        json.dumps(
            {"games": games, "seconds": round(seconds, 1), "games_per_s": round(games / seconds, 3), **shown}
        )
    )
    print(f"lightspiel rollout: {games} games -> {out} ({games / seconds:.2f} games/s)", file=sys.stderr)
    failed = []
    for name, op, bound in requirements:
        if name not in metrics:
            raise ConfigError(f"--require {name}: no such figure; figures: {', '.join(sorted(shown))}")
        ok = _OPS[op](metrics[name], bound)
        print(
            f"  require {name} {op} {bound}: {metrics[name]:.4f} {'ok' if ok else 'FAILED'}", file=sys.stderr
        )
        failed += [] if ok else [name]
    return 1 if failed else 0


def pairs(argv: list[str]) -> int:
    from datamodules.pairs import STRATEGIES, build_pairs, judge_pairs
    from datamodules.records import Episode, read_jsonl, write_jsonl_atomic
    from modules.errors import check_choice

    p = VerbParser(prog="python -m cli pairs", description="Episodes -> preference pairs.")
    p.add_argument("--episodes", required=True, nargs="+", help="episodes JSONL file(s)")
    p.add_argument("--strategy", default="margin", help=f"one of {', '.join(STRATEGIES)}")
    p.add_argument("--margin", type=float, default=0.1)
    p.add_argument("--max_pairs_per_state", type=int, default=4)
    p.add_argument(
        "--illegal_negatives",
        type=int,
        default=0,
        help="oracle: also prefer the move to N illegal moves per state",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--judge", help="re-score ambiguous pairs with this judge model (hub name, folder, or 'embedded')"
    )
    p.add_argument(
        "--judge_band", type=float, default=0.1, help="pairs with a gap up to margin + band are asked"
    )
    p.add_argument("--judge_threshold", type=float, default=0.6, help="confidence to keep (1 - it: flip)")
    p.add_argument("--out", required=True, help="pairs JSONL to write")
    args = p.parse_args(argv)
    check_choice(args.strategy, STRATEGIES, "--strategy")
    episodes = [e for path in args.episodes for e in read_jsonl(path, Episode)]  # every line validated first
    kwargs = {"max_pairs_per_state": args.max_pairs_per_state, "seed": args.seed}
    if args.illegal_negatives:
        if args.strategy != "oracle":
            raise ConfigError("--illegal_negatives needs --strategy oracle")
        kwargs["illegal_negatives"] = args.illegal_negatives
    kwargs.update(
        {"min_validity_gap": args.margin} if args.strategy == "validity" else {"margin": args.margin}
    )
    try:
        built = build_pairs(episodes, args.strategy, **kwargs)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    judged: dict[str, int] = {}
    if args.judge:
        from modules.judge import Judge

        judge = Judge(None if args.judge == "embedded" else args.judge)
        before = len(built)
        try:
            built = judge_pairs(built, judge, args.margin, args.judge_band, args.judge_threshold)
        except ValueError as err:
            raise ConfigError(str(err)) from None
        judged = {"keep": 0, "flip": 0, "drop": before - len(built)}
        for q in built:
            if q.judge:
                judged[q.judge["decision"]] += 1
    # Rows allowed to break the score order: a pair the judge flipped (each answer keeps its own score),
    # and correctness pairs (a correct answer beats a wrong one whatever the shaping terms scored).
    bad = [
        q
        for q in built
        if not q.chosen_score > q.rejected_score
        and not (q.judge and q.judge["decision"] == "flip")
        and q.strategy != "correctness"
    ]
    write_jsonl_atomic(args.out, built)
    states = len({q.state_key for q in built})
    figures = {
        "episodes": len(episodes),
        "pairs": len(built),
        "states": states,
        "score_order_violations": len(bad),
    }
    if args.judge:
        figures["judged"] = judged
    print(json.dumps(figures))
    print(f"lightspiel pairs: {len(built)} pairs from {states} states -> {args.out}", file=sys.stderr)
    if bad:
        print(
            f"  {len(bad)} rows without chosen_score > rejected_score (first: {bad[0].pair_id})",
            file=sys.stderr,
        )
    return 1 if bad else 0


def split(argv: list[str]) -> int:
    from pathlib import Path

    from datamodules.pairs import split_pairs
    from datamodules.records import PreferencePair, read_jsonl, write_jsonl_atomic

    p = VerbParser(prog="python -m cli split", description="Pairs -> train/eval by state.")
    p.add_argument("--pairs", required=True, help="pairs JSONL")
    p.add_argument("--eval_ratio", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="folder for pairs_train.jsonl and pairs_eval.jsonl")
    args = p.parse_args(argv)
    if not 0.0 <= args.eval_ratio < 1.0:
        raise ConfigError(f"--eval_ratio must be in [0, 1), got {args.eval_ratio}")
    rows = read_jsonl(args.pairs, PreferencePair)
    train, evals = split_pairs(rows, args.eval_ratio, args.seed)
    write_jsonl_atomic(Path(args.out) / "pairs_train.jsonl", train)
    write_jsonl_atomic(Path(args.out) / "pairs_eval.jsonl", evals)
    print(json.dumps({"pairs": len(rows), "train": len(train), "eval": len(evals)}))
    return 0


def tournament(argv: list[str]) -> int:
    from callbacks.tournament import Tournament
    from datamodules.records import write_json_atomic
    from datamodules.rollout import make_env
    from modules.modes import check_mode

    p = VerbParser(
        prog="python -m cli tournament",
        description="An LLM against a built-in opponent or another LLM; a JSON report.",
    )
    p.add_argument("--env", required=True)
    p.add_argument("--env_kwargs", help="env options as JSON")
    p.add_argument(
        "--opponent",
        default="heuristic",
        help="random, mcts, minimax or heuristic (what the env takes), or llm: the --opponent_* model",
    )
    _add_model_args(p, "evaluate")
    p.add_argument(
        "--opponent_model", help="with --opponent llm: hub name or local folder (default: embedded)"
    )
    p.add_argument("--opponent_config", help="with --opponent_ckpt_path: the config it was trained with")
    p.add_argument("--opponent_ckpt_path", help="with --opponent llm: a lightspiel checkpoint")
    p.add_argument("--opponent_mode", help="with --opponent llm: its acting mode (default: --mode)")
    p.add_argument("--games", type=int, default=100, help="games (half in each seat)")
    p.add_argument("--seed", type=int, default=900_000_000, help="first held-out seed")
    p.add_argument(
        "--num_envs",
        type=int,
        default=16,
        help="games stepped together: one act call a wave serves them all (wider: faster, more memory)",
    )
    p.add_argument("--out", required=True, help="the JSON report to write")
    p.add_argument("--baseline", help="an earlier report of this verb to compare with")
    p.add_argument(
        "--max_illegal_increase", type=float, default=0.01, help="with --baseline: the largest allowed rise"
    )
    args = p.parse_args(argv)
    check_mode(args.mode, "--mode")
    if args.games < 1 or args.num_envs < 1:
        raise ConfigError(f"--games and --num_envs must be >= 1, got {args.games}, {args.num_envs}")
    baseline = None
    if args.baseline:
        try:
            with open(args.baseline, encoding="utf-8") as fh:
                baseline = json.load(fh)["metrics"]
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise ConfigError(
                f"--baseline {args.baseline!r}: not a tournament report of this verb ({err})"
            ) from None
    env_kwargs = _json_option(args.env_kwargs, "--env_kwargs")
    llm = args.opponent == "llm"
    given = [f"--{k}" for k in ("opponent_model", "opponent_config", "opponent_ckpt_path", "opponent_mode")]
    if not llm and any(getattr(args, k[2:]) for k in given):
        raise ConfigError(f"{', '.join(k for k in given if getattr(args, k[2:]))} need --opponent llm")
    if llm and args.opponent_mode:
        check_mode(args.opponent_mode, "--opponent_mode")
    # A bad id or opponent: now, before any model loads.
    make_env(args.env, {**env_kwargs, "opponent": "self" if llm else args.opponent}).close()
    policy = _policy(args)
    opponent_name = args.opponent
    match = Tournament(
        args.env,
        env_kwargs,
        [] if llm else [args.opponent],
        args.games,
        [args.mode],
        args.seed,
        num_envs=min(args.num_envs, args.games),
        distributed=False,
    )
    if llm:
        from datamodules.players import PolicyPlayer

        opponent_name = args.opponent_ckpt_path or args.opponent_model or "embedded SmolLM2-135M-Instruct"
        match.llm_opponents[opponent_name] = PolicyPlayer(
            _policy(args, "opponent_"),
            name=opponent_name,
            learner=False,
            mode=args.opponent_mode or args.mode,
        )
    played = match.play(policy)
    metrics = played["results"][args.mode][opponent_name]
    samples = played["samples"][args.mode][opponent_name]
    report = {
        "env": args.env,
        "env_kwargs": env_kwargs,
        "player": args.ckpt_path or args.model or "embedded SmolLM2-135M-Instruct",
        "opponent": opponent_name,
        "mode": args.mode,
        "games": args.games,
        "first_seed": args.seed,
        "metrics": metrics,
        # Who sat where in the first games, and how they ended (the learner's seat alternates).
        "sample_games": [{"seed": e.seed, "players": e.players, "returns": e.returns} for e in samples],
    }
    write_json_atomic(args.out, report)
    keys = (
        "win_rate",
        "draw_rate",
        "loss_rate",
        "non_loss_rate",
        "mean_return",
        "illegal_rate",
        "parse_rate",
    )
    print(json.dumps({k: round(metrics[k], 4) for k in keys if k in metrics}))
    if baseline is None:
        return 0
    for key in keys:
        if key in metrics and key in baseline:
            print(
                f"  {key}: {baseline[key]:.4f} -> {metrics[key]:.4f} ({metrics[key] - baseline[key]:+.4f})",
                file=sys.stderr,
            )
    rise = metrics["illegal_rate"] - baseline.get("illegal_rate", 0.0)
    if rise > args.max_illegal_increase:
        print(f"  illegal rate rose by {rise:.4f} > {args.max_illegal_increase}: rejected", file=sys.stderr)
        return 1
    return 0

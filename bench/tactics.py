"""Does the trained policy take the win on the board, and block the opponent's? Tic-tac-toe tactics
at positions sampled from the whole game, before and after training.

    python bench/tactics.py --run runs/quickstart

Every tic-tac-toe position is reached from the empty board (both seats to move). A "win" position
is one where the player to move can complete a line at once; a "block" position one where it cannot
but the opponent could (a threat to block). ``--positions`` of each are drawn at random (``--seed``),
rendered as the env renders them, and the run's score-mode policy (greedy) picks a move: the share
that completes a line, or takes a threatened cell, is the measure. These two skills decide most
games against a random opponent. The positions mix ones training met and ones it did not (a
three-iteration run's pairs hold about 450 of the game's 4,520 positions), so the measure shows
mostly what generalised. Each share carries its 95% Wilson interval, and ``chance`` is what a
uniformly random legal move would score at the same positions. The untrained policy is the same
network with its adapter switched off. For a run on the tic-tac-toe env with its default renderer.

Prints one JSON object (and writes it to ``--out``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pyspiel  # noqa: E402

from cli.verbs import load_trained_module  # noqa: E402
from datamodules.metrics import wilson_interval  # noqa: E402
from envs import renderer_for  # noqa: E402
from envs.core import observe  # noqa: E402
from modules.errors import ConfigError  # noqa: E402

LINES = [(0, 1, 2), (3, 4, 5), (6, 7, 8), (0, 3, 6), (1, 4, 7), (2, 5, 8), (0, 4, 8), (2, 4, 6)]


def completing_cells(cells: str, mark: str) -> set[int]:
    """Empty cells (``.``) that would give ``mark`` a full line on the board ``cells`` (9 characters)."""
    out = set()
    for line in LINES:
        marks = [cells[i] for i in line]
        if marks.count(mark) == 2 and marks.count(".") == 1:
            out.add(line[marks.index(".")])
    return out


def positions() -> dict[str, list[tuple[pyspiel.State, set[int]]]]:
    """Every non-terminal position with a line to complete (``win``: the cells that complete it) or,
    failing that, a line to block (``block``: the cells the opponent would complete)."""
    game = pyspiel.load_game("tic_tac_toe")
    seen: dict[str, pyspiel.State] = {}
    stack = [game.new_initial_state()]
    while stack:
        state = stack.pop()
        key = str(state)
        if state.is_terminal() or key in seen:
            continue
        seen[key] = state
        stack.extend(state.child(a) for a in state.legal_actions())
    out: dict[str, list] = {"win": [], "block": []}
    for key in sorted(seen):
        state = seen[key]
        cells = key.replace("\n", "")
        me, other = ("x", "o") if state.current_player() == 0 else ("o", "x")
        wins, threats = completing_cells(cells, me), completing_cells(cells, other)
        if wins:
            out["win"].append((state, wins))
        elif threats:
            out["block"].append((state, threats))
    return out


def measure(policy, sample: dict[str, list]) -> dict:
    """The share of each kind's positions where the policy's greedy score-mode move is a good one."""
    renderer = renderer_for("tic_tac_toe")
    out = {}
    for kind, items in sample.items():
        observations, good = [], []
        for state, cells in items:
            prompt, ids, texts = observe(state, state.current_player(), renderer)
            observations.append({"prompt": prompt, "legal_actions": list(texts)})
            good.append({text for action, text in zip(ids, texts) if action in cells})
        actions = policy.act(observations, mode="score", greedy=True)
        hits = sum(action.text in g for action, g in zip(actions, good))
        low, high = wilson_interval(hits, len(items))
        out[kind] = {
            "positions": len(items),
            "good_moves": hits,
            "rate": round(hits / len(items), 3),
            "interval": [round(low, 3), round(high, 3)],
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--run", required=True, help="a tic-tac-toe run folder written by `python -m cli fit`"
    )
    parser.add_argument("--config", help="the run's config (default: RUN/tensorboard/config.yaml)")
    parser.add_argument("--ckpt_path", help="the trained checkpoint (default: RUN/checkpoints/last.ckpt)")
    parser.add_argument("--positions", type=int, default=300, help="positions of each kind")
    parser.add_argument("--seed", type=int, default=0, help="draws the positions")
    parser.add_argument("--out", default="bench/results/tactics.json")
    args = parser.parse_args()
    run = Path(args.run)
    config = args.config or str(run / "tensorboard" / "config.yaml")
    ckpt = args.ckpt_path or str(run / "checkpoints" / "last.ckpt")
    for option, path in (("--config", config), ("--ckpt_path", ckpt)):
        if not Path(path).is_file():
            raise ConfigError(f"{option}: no such file {path!r} (a fit run writes it under RUN/)")
    if args.positions < 1:
        raise ConfigError(f"--positions must be >= 1, got {args.positions}")
    everything = positions()
    rng = random.Random(args.seed)
    sample = {kind: rng.sample(items, min(args.positions, len(items))) for kind, items in everything.items()}
    chance = {
        kind: round(sum(len(cells) / len(state.legal_actions()) for state, cells in items) / len(items), 3)
        for kind, items in sample.items()
    }
    policy = load_trained_module(config, ckpt).policy
    policy.eval()
    report = {
        "benchmark": "tactics",
        "run": str(run),
        "positions_in_game": {kind: len(items) for kind, items in everything.items()},
        "chance": chance,
        "results": {},
    }
    # Untrained: the same network with its adapter switched off (a fresh LoRA adds exactly zero).
    for name, adapter in (
        ("untrained", policy.model.disable_adapter()),
        ("trained", contextlib.nullcontext()),
    ):
        with adapter:
            report["results"][name] = measure(policy, sample)
    text = json.dumps(report, indent=2)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()

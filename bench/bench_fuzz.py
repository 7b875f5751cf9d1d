"""Fuzz every registered env with random text and index answers, at scale.

    python bench/bench_fuzz.py --actions 1000000 --workers 2

Every registered ``lightspiel/*`` id gets an equal share of the actions (``lightspiel/OpenSpiel-v0``
plays a game no other id covers, ``--generic-game``). Episodes alternate between self-play (every
seat answers at random) and the env's registered opponent (the learner answers at random), and cycle
through the illegal-answer rules (random, forfeit, retry). An answer is an index into the legal
actions, a legal move's text, a string that names no move, or an out-of-range index; free-form envs
(the reasoning envs) get numbers and text. Asserted on every episode: no exception, it ends within
``--max-steps`` steps, and in zero-sum games the returns add up to 0 (penalties are apart from
returns). Prints, and writes to ``--out``, one JSON object: per env the actions, episodes,
actions/s, the share of answers the env did not accept, and the failures (an empty list is a pass).
Exits 1 if any episode failed.

Process-level parallelism (``multiprocessing``): OpenSpiel and the envs are single-threaded Python
and C++, so a pool of ``--workers`` processes is what scales it; nothing here needs a model.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import sys
import time
import traceback
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

RULES = ("random", "forfeit", "retry")


def _answer(obs: dict, rng: np.random.Generator):
    legal = obs["legal_actions"]
    roll = rng.random()
    if not legal:  # free-form (reasoning) envs
        return str(int(rng.integers(-5, 100))) if roll < 0.7 else f"The answer is {rng.integers(100)}."
    if roll < 0.08:
        return "no idea"
    if roll < 0.10:
        return int(len(legal) + rng.integers(5))  # an index past the legal list
    if roll < 0.55:
        return int(rng.integers(len(legal)))
    return legal[int(rng.integers(len(legal)))]


def _zero_sum(env) -> bool:
    import pyspiel

    game = getattr(env.unwrapped, "game", None)
    return isinstance(game, pyspiel.Game) and game.get_type().utility == pyspiel.GameType.Utility.ZERO_SUM


def _work(job: tuple[str, dict, int, int, int]) -> dict:
    """Play random episodes of one env until ``budget`` actions are taken."""
    import gymnasium

    import envs  # noqa: F401

    env_id, kwargs, budget, first_seed, max_steps = job
    registered = gymnasium.spec(env_id).kwargs.get("opponent", "random")
    opponents = ["self"] if registered == "self" else ["self", registered]
    made: dict[tuple[str, str], gymnasium.Env] = {}
    actions = episodes = rejected = 0
    failures: list[str] = []
    start = time.perf_counter()
    seed = first_seed
    while actions < budget and len(failures) < 5:
        opponent, rule = opponents[seed % len(opponents)], RULES[(seed // len(opponents)) % len(RULES)]
        key = (opponent, rule)
        try:
            if key not in made:
                options = {**kwargs, "opponent": opponent}
                if env_id not in ("lightspiel/Math-v0", "lightspiel/LogicProof-v0"):
                    options["illegal_rule"] = rule
                made[key] = gymnasium.make(env_id, disable_env_checker=True, **options)
            env = made[key]
            rng = np.random.default_rng(seed)
            obs, info = env.reset(seed=seed)
            over, steps = "returns" in info, 0
            while not over:
                if steps >= max_steps:
                    raise AssertionError(f"did not end within {max_steps} steps")
                obs, _reward, terminated, truncated, info = env.step(_answer(obs, rng))
                steps += 1
                rejected += not (info.get("parsed", True) and info.get("legal", True))
                over = terminated or truncated
            actions += steps
            episodes += 1
            if _zero_sum(env) and abs(sum(info["returns"])) > 1e-9:
                raise AssertionError(f"zero-sum returns sum to {sum(info['returns'])}: {info['returns']}")
        except Exception as err:  # a failure is recorded with its seed, then the next episode runs
            where = f"seed {seed}, opponent {opponent}, rule {rule}"
            failures.append(f"{where}: {type(err).__name__}: {err} | {traceback.format_exc(limit=2)[-300:]}")
            made.pop(key, None)
        seed += 1
    return {
        "env": env_id,
        "actions": actions,
        "episodes": episodes,
        "rejected": rejected,
        "seconds": time.perf_counter() - start,
        "failures": failures,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--actions", type=int, default=1_000_000, help="total actions over all envs")
    parser.add_argument("--workers", type=int, default=2, help="processes")
    parser.add_argument("--chunks", type=int, default=4, help="jobs per env (spread over the workers)")
    parser.add_argument("--max-steps", type=int, default=2_000, help="steps an episode may take")
    parser.add_argument("--generic-game", default="dots_and_boxes", help="game of lightspiel/OpenSpiel-v0")
    parser.add_argument("--out", default="bench/results/fuzz.json", help="JSON report (written whole)")
    args = parser.parse_args()

    import gymnasium

    import envs  # noqa: F401

    ids = sorted(k for k in gymnasium.registry if k.startswith("lightspiel/"))
    per_job = -(-args.actions // (len(ids) * args.chunks))
    jobs = []
    for n, env_id in enumerate(ids):
        kwargs = {"game": args.generic_game} if env_id == "lightspiel/OpenSpiel-v0" else {}
        for c in range(args.chunks):
            jobs.append((env_id, kwargs, per_job, 10_000_000 * (n + 1) + 1_000_000 * c, args.max_steps))
    start = time.perf_counter()
    with mp.get_context("spawn").Pool(args.workers) as pool:
        parts = pool.map(_work, jobs, chunksize=1)
    wall = time.perf_counter() - start
    per_env: dict[str, dict] = {}
    for part in parts:
        row = per_env.setdefault(
            part["env"], {"actions": 0, "episodes": 0, "rejected": 0, "cpu_seconds": 0.0, "failures": []}
        )
        row["actions"] += part["actions"]
        row["episodes"] += part["episodes"]
        row["rejected"] += part["rejected"]
        row["cpu_seconds"] += part["seconds"]
        row["failures"] += part["failures"]
    for row in per_env.values():
        row["actions_per_s"] = round(row["actions"] / row["cpu_seconds"], 1) if row["cpu_seconds"] else 0.0
        row["rejected_share"] = round(row.pop("rejected") / max(row["actions"], 1), 4)
        row["cpu_seconds"] = round(row["cpu_seconds"], 2)
    total = sum(r["actions"] for r in per_env.values())
    report = {
        "actions": total,
        "episodes": sum(r["episodes"] for r in per_env.values()),
        "envs": len(per_env),
        "workers": args.workers,
        "wall_s": round(wall, 1),
        "actions_per_s": round(total / wall, 1),
        "failures": sum(len(r["failures"]) for r in per_env.values()),
        "per_env": per_env,
    }
    text = json.dumps(report, indent=2)
    print(text)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(text + "\n")
    tmp.replace(out)
    return 1 if report["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())

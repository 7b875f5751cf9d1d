"""Batched rollouts: many environments stepped together, one policy call per wave of waiting seats.

The engine knows environments (``envs``) and asks a policy to act through one duck-typed method,
``policy.act(observations, mode=..., greedy=..., temperature=...) -> [Action(text, index, logp)]``. Non-LLM agents play
inside the environments (opponents), so every waiting observation belongs to a learner seat.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import gymnasium
from tqdm.auto import tqdm

import envs  # noqa: F401  (registers the lightspiel/* ids)
from datamodules.records import Episode, EpisodeWriter, Turn


@dataclass
class RolloutResult:
    episodes: list[Episode]
    metrics: dict[str, float] = field(default_factory=dict)


def make_env(env_id: str, env_kwargs: dict | None = None) -> gymnasium.Env:
    try:
        return gymnasium.make(env_id, disable_env_checker=True, **(env_kwargs or {}))
    except gymnasium.error.Error as err:
        raise ValueError(f"env {env_id!r}: {err}") from err


def outcome_metrics(episodes: Sequence[Episode], seconds: float | None = None) -> dict[str, float]:
    """Win/draw/loss, mean return, parse-success and illegal-action rates, from the learner's seat.

    In self-play, wins and returns are those of seat 0 (the first mover).
    """
    n = len(episodes)
    if n == 0:
        return {}
    rets = [e.returns[max(e.learner_seat, 0)] - e.penalties[max(e.learner_seat, 0)] for e in episodes]
    turns = [t for e in episodes for t in e.turns]
    n_turns = max(len(turns), 1)
    game_rets = [e.returns[max(e.learner_seat, 0)] for e in episodes]
    metrics = {
        "episodes": float(n),
        "win_rate": sum(r > 0 for r in game_rets) / n,
        "draw_rate": sum(r == 0 for r in game_rets) / n,
        "loss_rate": sum(r < 0 for r in game_rets) / n,
        "mean_return": sum(rets) / n,
        "parse_rate": sum(t.parsed for t in turns) / n_turns,
        "illegal_rate": sum(not t.legal for t in turns) / n_turns,
        "mean_length": len(turns) / n,
    }
    metrics["non_loss_rate"] = metrics["win_rate"] + metrics["draw_rate"]
    for rule in ("random", "retry", "forfeit"):  # how illegal or unparsed answers were resolved
        metrics[f"rule_{rule}_rate"] = sum(t.rule == rule for t in turns) / n_turns
    if seconds:
        metrics["games_per_s"] = n / seconds
    return metrics


class RolloutEngine:
    """Steps ``num_envs`` copies of an environment and batches the learner's decisions.

    Args:
        env_id: A registered Gymnasium id, e.g. ``lightspiel/TicTacToe-v0``.
        env_kwargs: Keyword arguments for ``gymnasium.make`` (opponent, illegal rule, ...).
        num_envs: Environments stepped together; each wave asks the policy for all waiting seats.
    """

    def __init__(self, env_id: str, env_kwargs: dict | None = None, num_envs: int = 16) -> None:
        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        self.env_id, self.env_kwargs, self.num_envs = env_id, dict(env_kwargs or {}), num_envs
        self.envs = [make_env(env_id, self.env_kwargs) for _ in range(num_envs)]

    def play(
        self,
        policy,
        seeds: Sequence[int],
        mode: str = "score",
        greedy: bool = False,
        out_path: str | Path | None = None,
        iteration: int = 0,
        reset_options: Callable[[int], dict] | None = None,
        progress: str | None = "rollout",
        temperature: float | None = None,
    ) -> RolloutResult:
        """Play one episode per seed; append each finished episode to ``out_path`` as it ends."""
        start = time.perf_counter()
        queue = list(enumerate(seeds))
        finished: list[tuple[int, Episode]] = []
        slots: dict[int, dict] = {}  # env index -> episode in flight
        writer = EpisodeWriter(out_path) if out_path else None
        bar = tqdm(total=len(seeds), desc=progress, leave=False, disable=progress is None, dynamic_ncols=True)
        try:

            def start_next(i: int) -> None:
                order, seed = queue.pop(0)
                opts = reset_options(order) if reset_options else None
                obs, info = self.envs[i].reset(seed=int(seed), options=opts)
                slots[i] = {"order": order, "seed": int(seed), "obs": obs, "info": info, "turns": []}

            for i in range(min(self.num_envs, len(queue))):
                start_next(i)
            while slots:
                waiting = sorted(slots)
                observations = [slots[i]["obs"] for i in waiting]
                actions = policy.act(observations, mode=mode, greedy=greedy, temperature=temperature)
                for i, act in zip(waiting, actions):
                    done = self._step(i, slots[i], act, mode, iteration)
                    if done is not None:
                        finished.append((slots[i]["order"], done))
                        if writer:
                            writer.write(done)
                        bar.update(1)
                        del slots[i]
                        if queue:
                            start_next(i)
        finally:
            bar.close()
            if writer:
                writer.close()
        episodes = [e for _, e in sorted(finished, key=lambda p: p[0])]
        return RolloutResult(episodes, outcome_metrics(episodes, time.perf_counter() - start))

    def _step(self, i: int, slot: dict, act, mode: str, iteration: int) -> Episode | None:
        obs, info = slot["obs"], slot["info"]
        answer = act.index if act.index is not None else act.text
        new_obs, reward, terminated, truncated, step_info = self.envs[i].step(answer)
        slot["turns"].append(
            Turn(
                seat=int(obs["seat"]),
                prompt=obs["prompt"],
                legal_actions=list(obs["legal_actions"]),
                completion=act.text,
                action=step_info.get("action"),
                action_text=step_info.get("action_text"),
                parsed=bool(step_info.get("parsed", True)),
                legal=bool(step_info.get("legal", True)),
                outcome=str(step_info.get("outcome", "ok")),
                rule=step_info.get("rule"),
                history=[int(a) for a in info.get("history", [])],
                reward=float(reward),
                logp=act.logp,
            )
        )
        slot["obs"], slot["info"] = new_obs, step_info
        if not (terminated or truncated):
            return None
        n = len(step_info.get("returns", [])) or 2
        return Episode(
            episode_id=f"{self.env_id}:{iteration}:{slot['seed']}",
            game=str(step_info.get("game", "")),
            env_id=self.env_id,
            seed=slot["seed"],
            opponent=str(self.envs[i].unwrapped.opponent),
            learner_seat=int(step_info.get("learner_seat", -1)),
            turns=slot["turns"],
            returns=[float(r) for r in step_info.get("returns", [0.0] * n)],
            penalties=[float(p) for p in step_info.get("penalties", [0.0] * n)],
            truncated=bool(truncated),
            iteration=iteration,
            mode=mode,
        )

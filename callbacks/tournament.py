"""Tournament evaluation: the policy against non-LLM opponents on held-out seeds.

``Tournament`` is the plain logic (tested without a Trainer); ``TournamentCallback`` runs it before
training and every K epochs, logs ``eval/<mode>/<opponent>/<metric>`` to the logger and writes one JSON
report per evaluation under ``<run>/reports/``.
"""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L

from datamodules.rollout import RolloutEngine, make_env, outcome_metrics
from modules.errors import ConfigError


class Tournament:
    """Plays a policy against each opponent, alternating seats, greedily, on fixed held-out seeds.

    Args:
        env: Gymnasium id.
        env_kwargs: Env options; ``opponent`` is set per match.
        opponents: Opponent names the env understands (random, mcts, minimax, heuristic).
        num_games: Games per opponent and mode (half in each seat for two-player games).
        modes: Acting modes to evaluate: ``score``, ``constrained``, ``generate``.
        seed: First seed; seeds ``seed .. seed + num_games - 1`` are used, apart from training's.
        num_envs: Games stepped together.
    """

    def __init__(
        self,
        env: str,
        env_kwargs: dict | None = None,
        opponents: list[str] | None = None,
        num_games: int = 20,
        modes: list[str] | None = None,
        seed: int = 900_000_000,
        num_envs: int = 16,
    ) -> None:
        if num_games < 1:
            raise ConfigError(f"num_games must be >= 1, got {num_games}")
        self.env, self.env_kwargs = env, dict(env_kwargs or {})
        self.opponents = list(opponents or ["random"])
        self.modes = list(modes or ["score"])
        bad = [m for m in self.modes if m not in ("score", "constrained", "generate")]
        if bad:
            raise ConfigError(f"tournament modes must be score, constrained or generate, got {bad}")
        self.num_games, self.seed, self.num_envs = num_games, seed, num_envs

    def run(self, policy) -> dict[str, dict[str, dict[str, float]]]:
        """``{mode: {opponent: metrics}}``."""
        return {mode: self._run_mode(policy, mode) for mode in self.modes}

    def exploitability(self, policy) -> dict:
        """Exploitability (and NashConv) of the policy's score-mode probabilities over every
        information state of the env's game."""
        from envs.exploitability import exploitability_report

        game = make_env(self.env, self.env_kwargs).unwrapped.game
        return exploitability_report(policy.action_probabilities, game)

    def _run_mode(self, policy, mode: str) -> dict[str, dict[str, float]]:
        results = {}
        for opponent in self.opponents:
            kwargs = {**self.env_kwargs, "opponent": opponent}
            engine = RolloutEngine(self.env, kwargs, min(self.num_envs, self.num_games))
            played = engine.play(
                policy,
                [self.seed + i for i in range(self.num_games)],
                mode=mode,
                greedy=True,
                reset_options=_alternate_seats,
                progress=f"tournament ({mode}) vs {opponent}",
            )
            metrics = dict(played.metrics)
            for seat in range(2):
                mine = [e for e in played.episodes if e.learner_seat == seat]
                for k, v in outcome_metrics(mine).items():
                    if k in ("win_rate", "non_loss_rate", "mean_return"):
                        metrics[f"seat{seat}_{k}"] = v
            results[opponent] = metrics
        return results


def _alternate_seats(game_index: int) -> dict:
    """The learner takes the first two seats in turn, so both sides of the game are measured."""
    return {"learner_seat": game_index % 2}


class TournamentCallback(L.Callback):
    """Evaluates the policy before training, every K epochs, and after the last epoch.

    Args:
        opponents: Opponents to play (names the env accepts).
        num_games: Games per opponent and mode per evaluation.
        every_n_epochs: Evaluate after every K-th epoch.
        modes: Policy acting modes to evaluate (score, constrained, generate).
        at_start: Also evaluate before the first update.
        env: Gymnasium id; defaults to the datamodule's ``env``.
        env_kwargs: Env options; default to the datamodule's ``env_kwargs``.
        seed: First held-out seed.
        num_envs: Games stepped together.
        exploitability: Also log the exploitability of the policy's score-mode action probabilities
            (small imperfect-information games such as Kuhn and Leduc poker; OpenSpiel's best response).
    """

    def __init__(
        self,
        opponents: list[str] | None = None,
        num_games: int = 20,
        every_n_epochs: int = 1,
        modes: list[str] | None = None,
        at_start: bool = True,
        env: str | None = None,
        env_kwargs: dict | None = None,
        seed: int = 900_000_000,
        num_envs: int = 16,
        exploitability: bool = False,
    ) -> None:
        if every_n_epochs < 1:
            raise ConfigError(f"TournamentCallback: every_n_epochs must be >= 1, got {every_n_epochs}")
        if num_games < 1:
            raise ConfigError(f"TournamentCallback: num_games must be >= 1, got {num_games}")
        self.opponents = list(opponents or ["random"])
        self.num_games, self.every_n_epochs, self.at_start = num_games, every_n_epochs, at_start
        self.modes = list(modes or ["score"])
        self.exploitability = exploitability
        self.env, self.env_kwargs, self.seed, self.num_envs = env, env_kwargs, seed, num_envs
        self.history: list[dict] = []

    def _tournament(self, trainer: L.Trainer) -> Tournament:
        dm = trainer.datamodule
        env = self.env or getattr(dm, "env", None)
        if env is None:
            raise ConfigError("TournamentCallback: give init_args.env or use a datamodule with an env")
        kwargs = self.env_kwargs if self.env_kwargs is not None else getattr(dm, "env_kwargs", {})
        return Tournament(env, kwargs, self.opponents, self.num_games, self.modes, self.seed, self.num_envs)

    def evaluate(self, trainer: L.Trainer, pl_module: L.LightningModule, label: str) -> dict:
        tournament = self._tournament(trainer)
        results = tournament.run(pl_module.policy)
        entry = {
            "label": label,
            "epoch": trainer.current_epoch,
            "step": trainer.global_step,
            "results": results,
        }
        if self.exploitability:
            entry["exploitability"] = tournament.exploitability(pl_module.policy)
        self.history.append(entry)
        if trainer.logger is not None:
            flat = {
                f"eval/{mode}/{opp}/{k}": v
                for mode, by_opp in results.items()
                for opp, metrics in by_opp.items()
                for k, v in metrics.items()
            }
            if "exploitability" in entry:
                flat["eval/exploitability"] = entry["exploitability"]["exploitability"]
            trainer.logger.log_metrics(flat, step=trainer.global_step)
        if trainer.is_global_zero:
            folder = Path(trainer.default_root_dir) / "reports"
            folder.mkdir(parents=True, exist_ok=True)
            _write_json(folder / f"tournament_{label}.json", entry)
            _write_json(folder / "tournament_history.json", self.history)
        return entry

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.at_start and not any(h["label"] == "start" for h in self.history):
            self.evaluate(trainer, pl_module, "start")

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        epoch = trainer.current_epoch
        last = trainer.max_epochs is not None and epoch + 1 >= trainer.max_epochs
        if (epoch + 1) % self.every_n_epochs == 0 or last:
            self.evaluate(trainer, pl_module, f"epoch{epoch:03d}")

    def state_dict(self) -> dict:
        return {"history": self.history}

    def load_state_dict(self, state_dict: dict) -> None:
        self.history = list(state_dict.get("history", []))


def _write_json(path: Path, data) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2))
    tmp.replace(path)

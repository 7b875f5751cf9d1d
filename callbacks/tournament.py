"""Tournament evaluation: the policy against non-LLM opponents on held-out seeds.

``Tournament`` is the plain logic (tested without a Trainer); ``TournamentCallback`` runs it before
training and every K epochs, logs ``eval/<mode>/<opponent>/<metric>`` to the logger and writes one JSON
report per evaluation under ``<run>/reports/``.

Figures come from :class:`datamodules.metrics.OutcomeRates` (torchmetrics): every rate carries its 95%
Wilson interval as ``<rate>_low``/``<rate>_high`` and the mean return its t-interval. Each report also
keeps the per-game outcomes by seed, so two evaluations on the same seeds can be compared game by game
(:func:`compare`, McNemar on non-loss, or on wins in a game nobody can lose); the callback prints that comparison of its first and last
evaluation at the end of fit.
"""

from __future__ import annotations

import time
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_info

from callbacks.ratings import IllegalGate, RatingTable, plot_history
from callbacks.schedule import EvaluationSchedule
from datamodules.distributed import gather, rank_and_world
from datamodules.metrics import OutcomeRates, mcnemar, update_from_episodes, wilson_interval
from datamodules.players import AdapterActor, PolicyPlayer
from datamodules.protocols import EnvSource, require
from datamodules.records import Episode, write_json_atomic
from datamodules.rollout import RolloutEngine, make_env
from datamodules.transcripts import log_transcripts
from modules.errors import ConfigError
from modules.modes import check_mode


class Tournament:
    """Plays a policy against each opponent, alternating seats, greedily, on fixed held-out seeds.

    Args:
        env: Gymnasium id.
        env_kwargs: Env options; ``opponent`` is set per match.
        opponents: Opponent names the env understands (random, mcts, minimax, heuristic), or
            ``self``: the policy plays every seat (in a cooperative game, ``win_rate`` is then the
            self-play success rate: the shared reward was earned).
        num_games: Games per opponent and mode (half in each seat for two-player games).
        modes: Acting modes to evaluate: ``score``, ``constrained``, ``generate``.
        seed: First seed; seeds ``seed .. seed + num_games - 1`` are used, apart from training's.
        num_envs: Games of a match stepped together. A mode's matches against the built-in
            opponents run side by side (each with this many), so one ``act`` call a wave serves
            them all; snapshot and other-model matches, and matches sized by ``ci_half_width``,
            run one after another.
        distributed: When a ``torch.distributed`` process group is initialised (DDP), each rank plays
            its share of the seeds (``seeds[rank::world_size]``) and the figures are summed over all
            ranks; every rank must then call :meth:`run` together. ``False``: each rank plays every
            game and reports its own figures (no cross-rank sync).
        ci_half_width: Size each match by the precision asked instead: play ``num_envs`` games at a
            time (seeds in order) until the 95% Wilson interval of the success rate is at most this
            wide on each side, or ``num_games`` (then a cap) are played. ``None``: ``num_games``.

    The success rate is the non-loss rate, or the win rate in games nobody can lose (every utility
    >= 0, e.g. a cooperative game whose shared reward is 0 or 1): :attr:`success`.
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
        distributed: bool = True,
        ci_half_width: float | None = None,
    ) -> None:
        if num_games < 1:
            raise ConfigError(f"num_games must be >= 1, got {num_games}")
        if ci_half_width is not None and not 0 < ci_half_width < 0.5:
            raise ConfigError(f"ci_half_width must be in (0, 0.5) or null, got {ci_half_width}")
        self.ci_half_width = ci_half_width
        self.env, self.env_kwargs = env, dict(env_kwargs or {})
        self.opponents = list(opponents or ["random"])
        self.modes = list(modes or ["score"])
        for mode in self.modes:
            check_mode(mode, "tournament modes")
        self.num_games, self.seed, self.num_envs = num_games, seed, num_envs
        self.distributed = distributed
        #: Past snapshots of the policy met as opponents: ``{"snapshot:<label>": adapter name}``
        #: (frozen adapters of the same network, see :class:`datamodules.players.AdapterActor`).
        self.snapshots: dict[str, str] = {}
        #: Other language models met as opponents: ``{name: PolicyPlayer}`` (e.g. another model or
        #: checkpoint, with its own acting mode), played through the engine's seats like snapshots.
        self.llm_opponents: dict = {}
        env = make_env(self.env, self.env_kwargs)
        #: ``"non_loss"``, or ``"win"`` where no game can be lost (the figure compared and sized on).
        self.success = "win" if env.unwrapped.game.min_utility() >= 0 else "non_loss"
        env.close()

    def run(self, policy) -> dict[str, dict[str, dict[str, float]]]:
        """``{mode: {opponent: metrics}}`` (see :meth:`play`)."""
        return self.play(policy)["results"]

    def play(self, policy) -> dict:
        """Play every mode against every opponent.

        Returns:
            ``{"results": {mode: {opponent: metrics}}, "games": {mode: {opponent: {seed: game}}}}``.
            ``metrics`` are :class:`OutcomeRates` figures with their intervals, ``games_per_s`` and
            per-seat ``seat<k>_win_rate``/``_non_loss_rate``/``_mean_return`` (with intervals); ``game``
            is ``{"seat", "result" (win/draw/loss), "non_loss", "win", "return"}`` of the learner,
            keyed by the seed as a string (JSON keys). ``"samples"``: ``{mode: {opponent:
            [Episode]}}``, the first two games this rank played, for transcripts.
        """
        results: dict = {}
        games: dict = {}
        samples: dict = {}
        for mode in self.modes:
            played = self._shared_matches(policy, mode)
            for opponent in [*self.opponents, *self.snapshots, *self.llm_opponents]:
                if opponent not in played:
                    played[opponent] = self._match(policy, mode, opponent)
                metrics, by_seed, sample = played[opponent]
                results.setdefault(mode, {})[opponent] = metrics
                games.setdefault(mode, {})[opponent] = by_seed
                samples.setdefault(mode, {})[opponent] = sample
        return {"results": results, "games": games, "samples": samples}

    def exploitability(self, policy) -> dict:
        """Exploitability (and NashConv) of the policy's score-mode probabilities over every
        information state of the env's game."""
        from envs.exploitability import exploitability_report

        game = make_env(self.env, self.env_kwargs).unwrapped.game
        return exploitability_report(policy.action_probabilities, game)

    def _llm_opponent(self, policy, opponent: str):
        """The player of a language-model opponent (a snapshot or another model), else None."""
        if opponent in self.snapshots:
            return PolicyPlayer(AdapterActor(policy, self.snapshots[opponent]), name=opponent, learner=False)
        return self.llm_opponents.get(opponent)

    def _ranks(self) -> tuple[int, int]:
        return rank_and_world() if self.distributed else (0, 1)

    def _chunks(self) -> list[range]:
        """Game indices in the order they are played: all at once, or (sized by precision) in
        chunks of ``num_envs`` per rank (rounded up to even, so each chunk plays both seats equally)."""
        if self.ci_half_width is None:
            return [range(self.num_games)]
        step = self.num_envs * self._ranks()[1]
        step = max(2, step + step % 2)
        return [range(i, min(i + step, self.num_games)) for i in range(0, self.num_games, step)]

    def _precise_enough(self, metrics: dict[str, float]) -> bool:
        if self.ci_half_width is None or not metrics:
            return False
        rate = f"{self.success}_rate"
        return (metrics[f"{rate}_high"] - metrics[f"{rate}_low"]) / 2 <= self.ci_half_width

    def _shared_matches(self, policy, mode: str) -> dict[str, tuple]:
        """The matches of ``mode`` against the built-in opponents, played together: their games are
        stepped side by side, so each wave's ``act`` call serves every match (positions that recur
        across matches run once) and no match's last few games run alone. Each game is the one its
        match would play alone. Only when every match plays all its games (``ci_half_width``
        null); ``{opponent: (metrics, by_seed, samples)}``, empty when there is nothing to share."""
        builtin = list(self.opponents)
        if self.ci_half_width is not None or len(builtin) < 2:
            return {}
        rank, world = self._ranks()
        mine = list(range(self.num_games))[rank::world]
        per_match = max(1, min(self.num_envs, -(-self.num_games // world)))
        engine = RolloutEngine(self.env, self.env_kwargs, per_match * len(builtin))
        games = [(opponent, i) for opponent in builtin for i in mine]
        start = time.perf_counter()
        played = engine.play(
            policy,
            [self.seed + i for _, i in games],
            mode=mode,
            greedy=True,
            opponents=[opponent for opponent, _ in games],
            # Seats follow the global game index; in self-play the learner holds every seat.
            reset_options=lambda k: None if games[k][0] == "self" else _alternate_seats(games[k][1]),
            progress=f"tournament ({mode}) vs {', '.join(builtin)}",
        ).episodes
        seconds = time.perf_counter() - start
        return {
            opponent: self._summary([e for (o, _), e in zip(games, played) if o == opponent], seconds)
            for opponent in builtin
        }

    def _match(self, policy, mode: str, opponent: str) -> tuple[dict[str, float], dict[str, dict], list]:
        """One mode against one opponent: this rank's share of the games, figures over all ranks."""
        rank, world = self._ranks()
        other = self._llm_opponent(policy, opponent)
        kwargs = {**self.env_kwargs, "opponent": "self" if other else opponent}
        engine = RolloutEngine(self.env, kwargs, max(1, min(self.num_envs, -(-self.num_games // world))))
        overall = OutcomeRates(sync_on_compute=world > 1)
        episodes: list[Episode] = []
        start = time.perf_counter()
        for chunk in self._chunks():
            mine = list(chunk)[rank::world]  # game indices of this rank (none in a short last chunk)
            played = []
            if mine and other:
                # The policy against another LLM player (its past self: the same network with the
                # snapshot's adapter; or another model) in the other seats, the learner's seat
                # alternating with the global game index.
                players = _llm_seats(policy, other, engine)
                played = engine.play(
                    None,
                    [self.seed + i for i in mine],
                    mode=mode,
                    greedy=True,
                    seats=lambda k, mine=mine, players=players: players[
                        _alternate_seats(mine[k])["learner_seat"]
                    ],
                    progress=f"tournament ({mode}) vs {opponent}",
                ).episodes
            elif mine:
                played = engine.play(
                    policy,
                    [self.seed + i for i in mine],
                    mode=mode,
                    greedy=True,
                    # Seats follow the global game index; in self-play the learner holds every seat.
                    reset_options=None
                    if opponent == "self"
                    else lambda k, mine=mine: _alternate_seats(mine[k]),
                    progress=f"tournament ({mode}) vs {opponent}",
                ).episodes
            episodes += played
            update_from_episodes(overall, played)  # every rank updates and syncs, with games or not
            # Every rank sees the same summed figures, so every rank stops after the same chunk.
            if self._precise_enough(overall.compute()):
                break
        return self._summary(episodes, time.perf_counter() - start)

    def _summary(self, episodes: list[Episode], seconds: float) -> tuple[dict[str, float], dict[str, dict], list]:
        """A match's figures over all ranks (this rank played ``episodes`` in ``seconds``), its games
        by seed, and its first two games on this rank."""
        sync = self._ranks()[1] > 1  # the states are summed over ranks (each rank counted its own games)
        metrics = update_from_episodes(OutcomeRates(sync_on_compute=sync), episodes).compute()
        if seconds > 0:  # this rank's wall time (shared by the matches played together)
            metrics["games_per_s"] = metrics.get("episodes", 0.0) / seconds
        keep = ("win_rate", "non_loss_rate", "mean_return")
        for seat in range(2):
            games = [e for e in episodes if e.learner_seat == seat]
            seat_rates = update_from_episodes(OutcomeRates(sync_on_compute=sync), games).compute()
            for k, v in seat_rates.items():
                if k.removesuffix("_low").removesuffix("_high") in keep:
                    metrics[f"seat{seat}_{k}"] = v
        by_seed = {str(e.seed): _game_record(e) for e in episodes}
        if sync:
            by_seed = {k: v for part in gather(by_seed) for k, v in part.items()}
        by_seed = dict(sorted(by_seed.items(), key=lambda kv: int(kv[0])))
        return metrics, by_seed, episodes[:2]


def _rating_key(name: str) -> str:
    """``generate@epoch002`` -> ``policy_generate`` (one curve per mode); a snapshot
    ``snapshot:generate@epoch001`` -> ``snapshot_generate_epoch001``; an opponent keeps its name."""
    if name.startswith("snapshot:"):
        return "snapshot_" + name.split(":", 1)[1].replace("@", "_")
    return f"policy_{name.split('@')[0]}" if "@" in name else name


def _llm_seats(policy, other: PolicyPlayer, engine: RolloutEngine) -> list[list]:
    """Seatings against an LLM player: ``[learner in seat 0, learner in seat 1]``; ``other`` holds
    every other seat."""
    learner = PolicyPlayer(policy, name="learner", learner=True)
    n = engine.envs[0].unwrapped.num_players
    return [[learner if s == seat else other for s in range(n)] for seat in range(2)]


def _alternate_seats(game_index: int) -> dict:
    """The learner takes the first two seats in turn, so both sides of the game are measured."""
    return {"learner_seat": game_index % 2}


def _game_record(episode: Episode) -> dict:
    """The learner's outcome of one game, as kept in the report for game-by-game comparison."""
    seat = max(episode.learner_seat, 0)
    game_return = episode.returns[seat]
    result = "win" if game_return > 0 else "draw" if game_return == 0 else "loss"
    return {
        "seat": episode.learner_seat,
        "result": result,
        "non_loss": game_return >= 0,
        "win": game_return > 0,
        "return": episode.returns[seat] - episode.penalties[seat],
    }


def compare(before_entry: dict, after_entry: dict, alpha: float = 0.05, rate: str = "non_loss") -> dict:
    """Compare two tournament report entries game by game, on the seeds both played.

    Per mode and opponent: the ``rate`` (``non_loss``, or ``win``: the success of a game nobody can
    lose) before and after over the matched games (with Wilson 95% intervals) and McNemar's paired
    test of that outcome per seed (:func:`datamodules.metrics.mcnemar`):
    matched games remove the between-game variance that two independent rates would carry, and only
    games whose outcome changed count. Pairs without per-game outcomes in either entry are skipped.

    Args:
        before_entry: A report entry (``{"results": ..., "games": ...}``), e.g. the one before training.
        after_entry: A later entry on the same seeds.
        alpha: The p-value below which the change is called larger than noise.
        rate: The per-game outcome compared: ``non_loss`` or ``win``.

    Returns:
        ``{mode: {opponent: {"rate", "games", "<rate>_before", "<rate>_before_low",
        "<rate>_before_high", "<rate>_after", "<rate>_after_low", "<rate>_after_high", "b", "c",
        "statistic", "p_value", "method", "verdict"}}}``; ``b`` counts games with the outcome before
        and without it after (e.g. not lost, then lost), ``c`` the reverse.
    """
    if rate not in ("non_loss", "win"):
        raise ConfigError(f"compare: rate must be non_loss or win, got {rate!r}")
    out: dict = {}
    before_games = before_entry.get("games") or {}
    for mode, by_opp in (after_entry.get("games") or {}).items():
        for opponent, after in by_opp.items():
            before = (before_games.get(mode) or {}).get(opponent) or {}
            seeds = [s for s in after if s in before]
            if not seeds:
                continue
            if any(rate not in before[s] or rate not in after[s] for s in seeds):
                continue  # a report written before per-game wins were kept
            was = [bool(before[s][rate]) for s in seeds]
            now = [bool(after[s][rate]) for s in seeds]
            n = len(seeds)
            row: dict = {"rate": rate, "games": n}
            for name, flags in (("before", was), ("after", now)):
                row[f"{rate}_{name}"] = sum(flags) / n
                row[f"{rate}_{name}_low"], row[f"{rate}_{name}_high"] = wilson_interval(sum(flags), n)
            row.update(mcnemar(was, now))
            p = row["p_value"]
            row["verdict"] = f"larger than noise (p={p:.3g})" if p < alpha else f"within noise (p={p:.3g})"
            out.setdefault(mode, {})[opponent] = row
    return out


def summary_line(mode: str, opponent: str, row: dict) -> str:
    """One line for a :func:`compare` row: rates with intervals before -> after, and the verdict."""
    r = row.get("rate", "non_loss")
    return (
        f"{mode} vs {opponent}: {r.replace('_', '-')} {row[f'{r}_before']:.2f} "
        f"[{row[f'{r}_before_low']:.2f}, {row[f'{r}_before_high']:.2f}] -> "
        f"{row[f'{r}_after']:.2f} [{row[f'{r}_after_low']:.2f}, {row[f'{r}_after_high']:.2f}] "
        f"on {row['games']} matched games; McNemar ({row['method']}, b={row['b']}, c={row['c']}): "
        f"{row['verdict']}"
    )


class TournamentCallback(EvaluationSchedule):
    """Evaluates the policy before training, every K epochs, and after the last epoch.

    Args:
        opponents: Opponents to play (names the env accepts).
        num_games: Games per opponent and mode per evaluation (the cap, with ``ci_half_width``).
        every_n_epochs: Evaluate after every K-th epoch.
        modes: Policy acting modes to evaluate (score, constrained, generate).
        at_start: Also evaluate before the first update.
        env: Gymnasium id; defaults to the datamodule's ``env``.
        env_kwargs: Env options; default to the datamodule's ``env_kwargs``.
        seed: First held-out seed.
        num_envs: Games of a match stepped together. A mode's matches against the built-in
            opponents run side by side (each with this many), so one ``act`` call a wave serves
            them all; snapshot and other-model matches, and matches sized by ``ci_half_width``,
            run one after another.
        exploitability: Also log the exploitability of the policy's score-mode action probabilities
            (small imperfect-information games such as Kuhn and Leduc poker; OpenSpiel's best response).
        name: Tells two tournaments in one Trainer apart (e.g. one per game): it keys the callback's
            state in the checkpoint, prefixes its logged metrics (``eval_<name>/...``) and its report
            files (``reports/tournament_<name>_<label>.json``). ``None``: ``eval/...`` and
            ``reports/tournament_<label>.json``.
        ci_half_width: Play each match until the success rate's 95% interval is at most this wide
            on each side (or ``num_games`` are played): see :class:`Tournament`. The before/after
            comparison is on the seeds both evaluations played.
        ratings: Rate the policy (one player per mode and evaluation) and the opponents with
            openskill over every game (:class:`callbacks.ratings.RatingTable`); log the ordinals
            (``eval/rating/...``) and write ``reports/tournament_ratings.png`` (ratings, success and
            illegal rates over time; also a TensorBoard image).
        gate_illegal_increase: Log ``eval/gated_success`` (a ``ModelCheckpoint`` monitor, mode max):
            the mean success rate, or -1 when the mean illegal-answer rate rose by more than this
            over the best evaluation so far, which is then never marked best.
        pool_size: Keep the last K evaluated policies as frozen snapshots (LoRA adapters beside the
            trained one in the same network, saved in the checkpoint) and play each later
            evaluation against them too (opponent ``snapshot:<label>``, in every mode); with
            ``ratings``, each snapshot keeps its rating as the policy of that evaluation, so the
            table is a league of the run's checkpoints and the fixed agents. 0: no pool.
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
        name: str | None = None,
        ci_half_width: float | None = None,
        ratings: bool = False,
        gate_illegal_increase: float | None = None,
        pool_size: int = 0,
    ) -> None:
        if pool_size < 0:
            raise ConfigError(f"TournamentCallback: pool_size must be >= 0, got {pool_size}")
        if name is not None and (not name or not name.replace("_", "").replace("-", "").isalnum()):
            raise ConfigError(f"TournamentCallback: name must be letters, digits, '-' or '_'; got {name!r}")
        if every_n_epochs < 1:
            raise ConfigError(f"TournamentCallback: every_n_epochs must be >= 1, got {every_n_epochs}")
        if num_games < 1:
            raise ConfigError(f"TournamentCallback: num_games must be >= 1, got {num_games}")
        self.opponents = list(opponents or ["random"])
        self.num_games, self.every_n_epochs, self.at_start = num_games, every_n_epochs, at_start
        self.modes = list(modes or ["score"])
        self.exploitability = exploitability
        self.env, self.env_kwargs, self.seed, self.num_envs = env, env_kwargs, seed, num_envs
        self.name = name
        if ci_half_width is not None and not 0 < ci_half_width < 0.5:
            raise ConfigError(
                f"TournamentCallback: ci_half_width must be in (0, 0.5) or null, got {ci_half_width}"
            )
        self.ci_half_width = ci_half_width
        self.success = "non_loss"  # set from the game when the first tournament is built
        self.history: list[dict] = []
        self.ratings = RatingTable() if ratings else None
        self.rating_history: list[dict] = []
        self.gate = IllegalGate(gate_illegal_increase) if gate_illegal_increase is not None else None
        self.pool_size = pool_size
        self.pool: list[dict] = []  # oldest first: {"label": evaluation label, "adapter": adapter name}

    @property
    def state_key(self) -> str:
        return type(self).__qualname__ if self.name is None else self._generate_state_key(name=self.name)

    @property
    def _prefix(self) -> str:
        return "eval" if self.name is None else f"eval_{self.name}"

    def _tournament(self, trainer: L.Trainer) -> Tournament:
        dm = trainer.datamodule
        if self.env is None:
            require(dm, EnvSource, "TournamentCallback without init_args.env", "a datamodule")
        env = self.env or dm.env
        kwargs = self.env_kwargs if self.env_kwargs is not None else dm.env_kwargs
        tournament = Tournament(
            env,
            kwargs,
            self.opponents,
            self.num_games,
            self.modes,
            self.seed,
            self.num_envs,
            ci_half_width=self.ci_half_width,
        )
        self.success = tournament.success
        return tournament

    def evaluate(self, trainer: L.Trainer, pl_module: L.LightningModule, label: str) -> dict:
        tournament = self._tournament(trainer)
        tournament.snapshots = {f"snapshot:{p['label']}": p["adapter"] for p in self.pool}
        # Under DDP every rank runs this hook: each plays its share of the seeds and the OutcomeRates
        # figures are summed over ranks, so every rank holds (and rank zero logs) the all-games figures.
        played = tournament.play(pl_module.policy)
        results = played["results"]
        entry = {
            "label": label,
            "epoch": trainer.current_epoch,
            "step": trainer.global_step,
            "results": results,
            "games": played["games"],  # per seed: the learner's outcome, for compare()
        }
        if self.exploitability:
            entry["exploitability"] = tournament.exploitability(pl_module.policy)
        if self.ratings is not None:
            entry["ratings"] = self.ratings.update(label, played["games"])
            self.rating_history.append({"label": label, "ordinals": entry["ratings"]})
        if self.gate is not None:
            # The fixed opponents only: the snapshots met change from one evaluation to the next.
            matches = [m for by_opp in results.values() for o, m in by_opp.items() if o in self.opponents]
            success = sum(m[f"{self.success}_rate"] for m in matches) / len(matches)
            illegal = sum(m["illegal_rate"] for m in matches) / len(matches)
            entry["gated_success"] = self.gate.score(success, illegal)
            trainer.callback_metrics[f"{self._prefix}/gated_success"] = torch.tensor(entry["gated_success"])
        self.history.append(entry)
        if self.pool_size:
            self._add_to_pool(pl_module.policy, label)
        if trainer.logger is not None:
            flat = {
                f"{self._prefix}/{mode}/{opp}/{k}": v
                for mode, by_opp in results.items()
                for opp, metrics in by_opp.items()
                for k, v in metrics.items()
            }
            if "exploitability" in entry:
                flat[f"{self._prefix}/exploitability"] = entry["exploitability"]["exploitability"]
            for name, value in entry.get("ratings", {}).items():
                flat[f"{self._prefix}/rating/{_rating_key(name)}"] = value
            if "gated_success" in entry:
                flat[f"{self._prefix}/gated_success"] = entry["gated_success"]
            trainer.logger.log_metrics(flat, step=trainer.global_step)
            for mode, by_opp in played["samples"].items():
                for opp, sample in by_opp.items():
                    for logger in trainer.loggers:
                        log_transcripts(
                            logger, f"{self._prefix}/{mode}/{opp}/games", sample, trainer.global_step
                        )
        if trainer.is_global_zero:
            write_json_atomic(self._report(trainer, label), entry)
            write_json_atomic(self._report(trainer, "history"), self.history)
            if self.ratings is not None:
                self._plot(trainer)
        return entry

    def _add_to_pool(self, policy, label: str) -> None:
        """The policy just evaluated joins the pool; past ``pool_size``, the oldest snapshot's adapter
        slot is reused for it. Adapter names carry the tournament's name, so two tournaments keep
        separate pools."""
        if len(self.pool) < self.pool_size:  # the first slot name no snapshot holds
            used = {p["adapter"] for p in self.pool}
            adapter = next(f"pool_{self.name or 'eval'}_{k}" for k in range(len(used) + 1) if
                           f"pool_{self.name or 'eval'}_{k}" not in used)  # fmt: skip
        else:
            adapter = self.pool.pop(0)["adapter"]
        policy.snapshot_adapter(adapter)
        self.pool.append({"label": label, "adapter": adapter})

    def _plot(self, trainer: L.Trainer) -> None:
        import matplotlib.pyplot as plt

        path = self._report(trainer, "ratings").with_suffix(".png")
        fig = plot_history(self.history, self.rating_history, self.success, path)
        for logger in trainer.loggers:
            add_figure = getattr(getattr(logger, "experiment", None), "add_figure", None)
            if add_figure is not None:
                add_figure(f"{self._prefix}/ratings", fig, global_step=trainer.global_step, close=False)
        plt.close(fig)

    def _report(self, trainer: L.Trainer, suffix: str) -> Path:
        stem = "tournament" if self.name is None else f"tournament_{self.name}"
        return Path(trainer.default_root_dir) / "reports" / f"{stem}_{suffix}.json"

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Compare the first and last evaluations game by game: one summary line per mode and
        opponent, and ``reports/tournament_comparison.json``."""
        if len(self.history) < 2:
            return
        first, last = self.history[0], self.history[-1]
        comparison = compare(first, last, rate=self.success)
        for mode, by_opp in comparison.items():
            for opponent, row in by_opp.items():
                rank_zero_info(
                    f"{self._prefix} {first['label']} -> {last['label']}, {summary_line(mode, opponent, row)}"
                )
        if trainer.is_global_zero:
            report = {
                "before": first["label"],
                "after": last["label"],
                "rate": self.success,
                "comparison": comparison,
            }
            write_json_atomic(self._report(trainer, "comparison"), report)

    def state_dict(self) -> dict:
        state = {
            "history": self.history,
            "success": self.success,
            "rating_history": self.rating_history,
            "pool": self.pool,
        }
        if self.ratings is not None:
            state["ratings"] = self.ratings.state_dict()
        if self.gate is not None:
            state["gate"] = self.gate.state_dict()
        return state

    def load_state_dict(self, state_dict: dict) -> None:
        self.history = list(state_dict.get("history", []))
        self.success = state_dict.get("success", self.success)
        self.rating_history = list(state_dict.get("rating_history", []))
        # The snapshots' weights come back with the module's state (their adapters are saved there).
        self.pool = list(state_dict.get("pool", []))[-self.pool_size :] if self.pool_size else []
        if self.ratings is not None and "ratings" in state_dict:
            self.ratings = RatingTable(state_dict["ratings"])
        if self.gate is not None and "gate" in state_dict:
            self.gate = IllegalGate(self.gate.max_increase, state_dict["gate"])

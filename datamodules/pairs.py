"""Preference pairs from episodes, by a named strategy, and a deterministic train/eval split.

Strategies:
- ``margin`` (seed 000): at the same state (same prompt for the same seat), an action from a
  better-scoring game is preferred to one from a worse-scoring game when the score gap is at least
  ``margin``. A game's score for a seat is its return minus its illegal-answer penalties.
- ``oracle``: at every visited state, the best action by exact minimax value (``minimax``) or MCTS
  estimates (``mcts``; determinized from the seat's information in imperfect-information games) is
  preferred to each action whose value is at least ``margin`` lower. ``auto`` uses exact values
  where the game is small enough to solve, and MCTS otherwise.
Both also prefer the best-known legal action to any illegal or unparseable answer seen at that state,
which is what teaches a generating model to stay legal.

For the reasoning envs (answers are free text; each turn carries the env's ``verdict``):
- ``correctness`` (seed 003): among the answers sampled for one prompt, each correct answer is
  preferred to each incorrect or unparsed one; then, among correct answers, a higher-scoring one
  (the verdict's ``reward``: correctness plus format and length terms) to a lower one when the gap
  is at least ``margin``. Correctness always comes first, whatever the shaping terms say.
- ``validity`` (seed 004): proofs of one problem ranked by their share of solver-valid steps; the
  higher is preferred when the gap is at least ``min_validity_gap`` (never a proof with a wrong
  final answer over one with the right answer), and with ``require_valid_winner`` only a proof whose
  every step is valid (and that reaches the statement) may win.
"""

from __future__ import annotations

import dataclasses
import hashlib
import random
import warnings
from collections import defaultdict
from collections.abc import Sequence

import numpy as np

from datamodules.records import Episode, PreferencePair, Turn
from modules.errors import ConfigError

STRATEGIES = ("margin", "oracle", "correctness", "validity")
ORACLES = ("auto", "minimax", "mcts")


def state_key(game: str, turn: Turn) -> str:
    """Identifies a decision state as the learner saw it: the game, the seat and the prompt text."""
    digest = hashlib.sha1(f"{game}\x00{turn.seat}\x00{turn.prompt}".encode()).hexdigest()
    return digest[:16]


def _pair(group: list[tuple[Episode, Turn]], chosen: str, rejected: str, cs: float, rs: float, strategy: str):
    ep, turn = group[0]
    key = state_key(ep.game, turn)
    pid = hashlib.sha1(f"{key}\x00{chosen}\x00{rejected}".encode()).hexdigest()[:16]
    return PreferencePair(
        pair_id=pid,
        prompt=turn.prompt,
        chosen=chosen,
        rejected=rejected,
        chosen_score=float(cs),
        rejected_score=float(rs),
        strategy=strategy,
        state_key=key,
        game=ep.game,
        seat=turn.seat,
        episode_ids=sorted({e.episode_id for e, _ in group}),
        iteration=max(e.iteration for e, _ in group),
    )


def _groups(episodes: Sequence[Episode]) -> dict[str, list[tuple[Episode, Turn]]]:
    groups: dict[str, list[tuple[Episode, Turn]]] = defaultdict(list)
    for ep in episodes:
        for turn in ep.turns:
            groups[state_key(ep.game, turn)].append((ep, turn))
    return groups


def margin_pairs(
    episodes: Sequence[Episode],
    margin: float = 0.1,
    max_pairs_per_state: int = 4,
    seed: int = 0,
    illegal_score: float = -2.0,
) -> list[PreferencePair]:
    """Pairs of legal answers at the same state whose games' scores differ by at least ``margin``,
    plus the best legal answer against each illegal or unparseable one (never the other way round,
    however its game ended)."""
    if margin <= 0:
        raise ValueError(f"margin must be > 0, got {margin}")
    rng = random.Random(seed)
    pairs = []
    for _key, group in sorted(_groups(episodes).items()):
        scores: dict[str, list[float]] = defaultdict(list)
        for ep, turn in group:
            if turn.outcome == "ok" and turn.action_text is not None:
                scores[turn.action_text].append(ep.returns[turn.seat] - ep.penalties[turn.seat])
        mean = {a: float(np.mean(s)) for a, s in scores.items()}
        ranked = sorted(mean, key=lambda a: (-mean[a], a))
        found = [(a, b) for i, a in enumerate(ranked) for b in ranked[i + 1 :] if mean[a] - mean[b] >= margin]
        rng.shuffle(found)
        for a, b in found[:max_pairs_per_state]:
            pairs.append(_pair(group, a, b, mean[a], mean[b], "margin"))
        if ranked:
            bad = sorted(
                {t.completion for _, t in group if t.outcome != "ok"} - set(group[0][1].legal_actions)
            )
            for rejected in bad[:max_pairs_per_state]:
                pairs.append(_pair(group, ranked[0], rejected, mean[ranked[0]], illegal_score, "margin"))
    return pairs


def oracle_pairs(
    episodes: Sequence[Episode],
    oracle: str = "auto",
    margin: float = 0.1,
    max_pairs_per_state: int = 2,
    mcts_simulations: int = 200,
    seed: int = 0,
    illegal_score: float = -2.0,
    illegal_negatives: int = 0,
    discount: float = 1.0,
    ranked_only: bool = False,
) -> list[PreferencePair]:
    """Pairs ranked by an oracle's values of all legal moves at each visited state.

    ``discount``: exact values discount each later decision (:func:`envs.oracles.action_values`):
    with a ``margin`` below the gaps it makes (``1 - discount**2`` between a win now and one at the
    next turn, less between later ones: about 0.07 at the smallest in tic-tac-toe at 0.95, so a
    margin of 0.1 ranks only the first win), a quicker win is preferred to a slower one and a slower
    loss to a quicker one (a blocked threat in a lost position), at states where plain minimax rates
    every move alike. MCTS values are not discounted. A judge (:func:`judge_pairs`) sees every such
    pair as ambiguous (its gap is within ``band`` of ``margin``), and may flip or drop it.

    ``illegal_negatives``: also prefer the chosen move to up to this many moves the state does not
    allow (an occupied cell, a full column), written as the env would read them (a text the
    renderer parses back to that illegal action). Score-mode rollouts never see an illegal answer,
    so without these DPO on canonical moves leaves free-text answers free to name taken cells.

    ``ranked_only``: skip the states where no legal move is worse than the best by ``margin`` (under
    plain minimax: every move wins, every move draws, or every move loses): their only pairs are
    illegal answers (taken cells, and any illegal answer the rollouts gave there), which score mode
    never plays, with one of several equal moves as the chosen one. About a quarter of a
    tic-tac-toe iteration's states, each a forward and backward pass over its prompt in training."""
    from envs import renderer_for, state_from_history

    if oracle not in ORACLES:
        raise ValueError(f"oracle must be one of {ORACLES}, got {oracle!r}")
    if margin <= 0:
        raise ValueError(f"margin must be > 0, got {margin}")
    rng = random.Random(seed)
    renderers: dict[str, object] = {}
    values_of = _OracleValues(oracle, mcts_simulations, np.random.default_rng(seed), discount)
    pairs = []
    for _key, group in sorted(_groups(episodes).items()):
        ep, turn = group[0]
        state = state_from_history(ep.game, turn.history)
        values, used = values_of(ep.game, state, turn.seat)
        # Key values by the env's action text: what the policy scores, emits and is trained on.
        if ep.game not in renderers:
            renderers[ep.game] = renderer_for(ep.game)
        renderer = renderers[ep.game]
        by_text = {renderer.action_text(state, turn.seat, a): v for a, v in values.items()}
        if not by_text:
            continue
        best = max(by_text.values())
        winners = sorted(a for a, v in by_text.items() if v == best)
        chosen = rng.choice(winners)
        losers = sorted(a for a, v in by_text.items() if v <= best - margin)
        if ranked_only and not losers:
            continue
        rng.shuffle(losers)
        for rejected in losers[:max_pairs_per_state]:
            pairs.append(_pair(group, chosen, rejected, best, by_text[rejected], f"oracle:{used}"))
        bad = sorted({t.completion for _, t in group if t.outcome != "ok"} - set(turn.legal_actions))
        for rejected in bad[:max_pairs_per_state]:
            pairs.append(_pair(group, chosen, rejected, best, illegal_score, f"oracle:{used}"))
        if illegal_negatives > 0:
            made = sorted(set(illegal_texts(renderer, state, turn.seat)) - set(bad))
            # Their own generator: turning the option on leaves every other pair as it was.
            for rejected in random.Random(f"{seed}:{_key}").sample(made, min(illegal_negatives, len(made))):
                pairs.append(
                    _pair(group, chosen, rejected, best, illegal_score, f"oracle:{used}:illegal-move")
                )
    return pairs


def illegal_texts(renderer, state, seat: int) -> list[str]:
    """Texts of the moves ``seat`` may not make at ``state`` that the renderer reads back as exactly
    that move (so each is an answer the env would judge illegal, not unparsed)."""
    legal = set(state.legal_actions(seat))
    legal_texts = {renderer.action_text(state, seat, a) for a in legal}
    out = []
    for action in range(state.get_game().num_distinct_actions()):
        if action in legal:
            continue
        try:
            text = renderer.action_text(state, seat, action)
            readable = renderer.parse(text, state, seat) == action
        except Exception:  # a renderer may not describe a move that cannot be made here
            continue
        if readable and text not in legal_texts:
            out.append(text)
    return out


def check_oracle_discount(discount: float, oracle: str, unused_by: str | None = None) -> None:
    """``--data.oracle_discount``: in (0, 1], and below 1 only where the oracle's exact values are
    used (``unused_by`` names the setting that makes them unused, if one does; MCTS estimates are not
    discounted)."""
    if not 0 < discount <= 1:
        raise ConfigError(f"--data.oracle_discount must be in (0, 1] (1: plain minimax), got {discount}")
    if discount == 1:
        return
    if unused_by is not None:
        raise ConfigError(
            f"--data.oracle_discount {discount} discounts the oracle's values, which {unused_by} does not "
            "use; leave it at 1"
        )
    if oracle == "mcts":
        raise ConfigError(
            f"--data.oracle_discount {discount} discounts exact minimax values; --data.oracle mcts gives "
            "estimates it does not discount: use oracle auto or minimax"
        )


class _OracleValues:
    """Values of every legal move for a seat: exact where the game allows, else MCTS (``auto``).

    ``auto`` decides once per game, by solving its initial position: a game too large from its start
    is searched by MCTS everywhere. (Trying exact search at each position until one ran out of budget
    made which positions were solved exactly depend on what the process had cached, so a resumed run
    could value them differently.)"""

    def __init__(
        self, oracle: str, simulations: int, rng: np.random.Generator, discount: float = 1.0
    ) -> None:
        self.oracle, self.simulations, self.rng, self.discount = oracle, simulations, rng, discount
        self.too_large: set[str] = set()  # games found too large (or imperfect) for exact search
        self.decided: set[str] = set()  # games whose initial position ``auto`` has tried

    def _decide(self, game: str) -> None:
        from envs import SearchTooLargeError, action_values, load_game

        self.decided.add(game)
        start = load_game(game).new_initial_state()
        if start.is_chance_node() or start.is_terminal():
            return  # no decision at the start: each position is tried as it comes
        try:
            action_values(start, start.current_player(), discount=self.discount)
        except SearchTooLargeError:
            self._too_large(game)

    def _too_large(self, game: str) -> None:
        self.too_large.add(game)
        if self.discount != 1:
            warnings.warn(
                f"oracle_discount {self.discount}: {game} is too large for exact search; its MCTS values "
                "are not discounted",
                stacklevel=3,
            )

    def __call__(self, game: str, state, seat: int) -> tuple[dict[int, float], str]:
        from envs import SearchTooLargeError, action_values, mcts_action_values

        if self.oracle == "auto" and game not in self.decided:
            self._decide(game)
        if self.oracle != "mcts" and game not in self.too_large:
            try:
                return action_values(state, seat, discount=self.discount), "minimax"
            except SearchTooLargeError as err:
                if self.oracle == "minimax":
                    raise ConfigError(
                        f"--data.oracle minimax cannot solve {game!r} ({err}); use auto or mcts"
                    ) from err
                self._too_large(game)
        return mcts_action_values(state, seat, self.simulations, self.rng), "mcts"


def _answers(group: list[tuple[Episode, Turn]]) -> dict[str, dict]:
    """Each distinct answer text of a state with its verdict (the first seen)."""
    out: dict[str, dict] = {}
    for _ep, turn in group:
        if turn.verdict is None:
            raise ConfigError(
                "this pair strategy needs the verdicts of a reasoning env (lightspiel/Math-v0, "
                "lightspiel/LogicProof-v0); these episodes have none"
            )
        out.setdefault(turn.completion, turn.verdict)
    return out


def correctness_pairs(
    episodes: Sequence[Episode], margin: float = 0.1, max_pairs_per_state: int = 4, seed: int = 0
) -> list[PreferencePair]:
    """Correct over incorrect answers to one prompt, then better over worse correct ones (see the
    module docstring)."""
    if margin <= 0:
        raise ValueError(f"margin must be > 0, got {margin}")
    rng = random.Random(seed)
    pairs = []
    for _key, group in sorted(_groups(episodes).items()):
        answers = _answers(group)
        score = {a: float(v["reward"]) for a, v in answers.items()}
        right = sorted((a for a, v in answers.items() if v.get("correct")), key=lambda a: (-score[a], a))
        wrong = sorted(a for a, v in answers.items() if not v.get("correct"))
        found = [(a, b) for a in right for b in wrong]
        rng.shuffle(found)
        better = [
            (a, b) for i, a in enumerate(right) for b in right[i + 1 :] if score[a] - score[b] >= margin
        ]
        rng.shuffle(better)
        for a, b in (found + better)[:max_pairs_per_state]:
            pairs.append(_pair(group, a, b, score[a], score[b], "correctness"))
    return pairs


def validity_pairs(
    episodes: Sequence[Episode],
    min_validity_gap: float = 0.1,
    require_valid_winner: bool = False,
    max_pairs_per_state: int = 4,
    seed: int = 0,
) -> list[PreferencePair]:
    """Proofs with a higher share of solver-valid steps over lower ones (see the module docstring)."""
    if min_validity_gap <= 0:
        raise ValueError(f"min_validity_gap must be > 0, got {min_validity_gap}")
    rng = random.Random(seed)
    pairs = []
    for _key, group in sorted(_groups(episodes).items()):
        answers = _answers(group)
        share = {a: float(v.get("valid_share", 0.0)) for a, v in answers.items()}
        ranked = sorted(share, key=lambda a: (-share[a], a))
        found = [
            (a, b)
            for i, a in enumerate(ranked)
            for b in ranked[i + 1 :]
            if share[a] - share[b] >= min_validity_gap
            and (not require_valid_winner or answers[a].get("all_valid"))
            and (
                answers[a].get("correct") or not answers[b].get("correct")
            )  # never a wrong answer over a right one
        ]
        rng.shuffle(found)
        for a, b in found[:max_pairs_per_state]:
            pairs.append(_pair(group, a, b, share[a], share[b], "validity"))
    return pairs


def judge_decision(confidence: float, threshold: float = 0.6) -> str:
    """What a judge's confidence that the chosen answer is better does to a pair: ``keep`` at or above
    ``threshold``, ``flip`` at or below ``1 - threshold``, ``drop`` in between (too close to call)."""
    if not 0.5 <= threshold <= 1.0:
        raise ValueError(f"judge threshold must be in [0.5, 1], got {threshold}")
    if confidence >= threshold:
        return "keep"
    if confidence <= 1.0 - threshold:
        return "flip"
    return "drop"


def judge_pairs(
    pairs: Sequence[PreferencePair], judge, margin: float, band: float = 0.1, threshold: float = 0.6
) -> list[PreferencePair]:
    """Re-score the pairs whose score gap lies within ``band`` of ``margin`` (the ambiguous ones) with
    ``judge.preferences([(prompt, chosen, rejected)])`` (see :class:`modules.judge.Judge`): each is
    kept, flipped (chosen and rejected swapped, each keeping its own score) or dropped by
    :func:`judge_decision`, and the decision is stored in the pair's ``judge`` field. Other pairs
    pass unchanged (an illegal answer's score is far below any legal one's, so those pairs are
    outside the band)."""
    if band < 0:
        raise ValueError(f"judge band must be >= 0, got {band}")
    ambiguous = [i for i, p in enumerate(pairs) if p.chosen_score - p.rejected_score <= margin + band]
    confidences = judge.preferences(
        [(pairs[i].prompt, pairs[i].chosen, pairs[i].rejected) for i in ambiguous]
    )
    verdicts = dict(zip(ambiguous, confidences))
    out = []
    for i, pair in enumerate(pairs):
        if i not in verdicts:
            out.append(pair)
            continue
        decision = judge_decision(verdicts[i], threshold)
        record = {
            "model": getattr(judge, "name", type(judge).__name__),
            "decision": decision,
            "confidence": float(verdicts[i]),
            "gap": pair.chosen_score - pair.rejected_score,
        }
        if decision == "keep":
            out.append(dataclasses.replace(pair, judge=record))
        elif decision == "flip":
            out.append(
                dataclasses.replace(
                    pair,
                    chosen=pair.rejected,
                    rejected=pair.chosen,
                    chosen_score=pair.rejected_score,
                    rejected_score=pair.chosen_score,
                    judge=record,
                )
            )
    return out


def build_pairs(episodes: Sequence[Episode], strategy: str = "margin", **kwargs) -> list[PreferencePair]:
    if strategy == "margin":
        return margin_pairs(episodes, **kwargs)
    if strategy == "oracle":
        return oracle_pairs(episodes, **kwargs)
    if strategy == "correctness":
        return correctness_pairs(episodes, **kwargs)
    if strategy == "validity":
        return validity_pairs(episodes, **kwargs)
    raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")


def split_pairs(
    pairs: Sequence[PreferencePair], eval_ratio: float = 0.1, seed: int = 0
) -> tuple[list[PreferencePair], list[PreferencePair]]:
    """Deterministic train/eval split by state: all pairs of a state fall on the same side."""
    if not 0.0 <= eval_ratio < 1.0:
        raise ValueError(f"eval_ratio must be in [0, 1), got {eval_ratio}")
    train, evals = [], []
    for p in pairs:
        h = int(hashlib.sha1(f"{seed}\x00{p.state_key}".encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
        (evals if h < eval_ratio else train).append(p)
    return train, evals

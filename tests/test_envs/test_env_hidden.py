"""Information hidden from a seat never appears in its prompt, for every imperfect-information game.

Two checks: (1) the prompt (and the legal action texts) is a function of the seat's OpenSpiel
information state: states the seat cannot tell apart, differing in hidden cards or dice, give the
same prompt; (2) over many played episodes, the other seats' private cards or dice never show up in
the learner's prompts, final observations included.
"""

from __future__ import annotations

import re

import gymnasium
import numpy as np
import pyspiel
import pytest

from envs import load_game, observe, renderer_for, sample_determinization


def _all_decision_states(game: pyspiel.Game):
    stack = [game.new_initial_state()]
    while stack:
        state = stack.pop()
        if state.is_terminal():
            continue
        if state.is_chance_node():
            stack += [state.child(a) for a, p in state.chance_outcomes() if p > 0]
            continue
        yield state
        stack += [state.child(a) for a in state.legal_actions()]


@pytest.mark.parametrize(
    "game_name", ["kuhn_poker", "kuhn_poker(players=3)", "leduc_poker", "lewis_signaling"]
)
def test_prompt_is_a_function_of_the_information_state_exhaustive(game_name):
    game = load_game(game_name)
    renderer = renderer_for(game)
    seen: dict[tuple[int, str], tuple[str, tuple[str, ...]]] = {}
    hidden_differs = 0
    for state in _all_decision_states(game):
        seat = state.current_player()
        key = (seat, state.information_state_string(seat))
        prompt, _, texts = observe(state, seat, renderer)
        if key in seen:
            assert seen[key] == (prompt, texts), (game_name, key)
            hidden_differs += 1
        else:
            seen[key] = (prompt, texts)
    assert hidden_differs > 0  # some information states were reached by several hidden deals


def _random_decision_states(game_name: str, count: int, seed: int):
    game = load_game(game_name)
    rng = np.random.default_rng(seed)
    found = []
    while len(found) < count:
        state = game.new_initial_state()
        while not state.is_terminal():
            if state.is_chance_node():
                outcomes = state.chance_outcomes()
                state.apply_action(outcomes[int(rng.integers(len(outcomes)))][0])
                continue
            if rng.random() < 0.3:
                found.append(state.clone())
            legal = state.legal_actions()
            state.apply_action(legal[int(rng.integers(len(legal)))])
    return found[:count]


@pytest.mark.parametrize(
    "game_name",
    [
        "liars_dice",
        "liars_dice(numdice=2)",
        "lightspiel_repeated_poker(base=kuhn_poker,rounds=5)",
        "lightspiel_repeated_poker(base=leduc_poker,rounds=3)",
        "leduc_poker(players=3)",
    ],
)
def test_prompt_is_a_function_of_the_information_state_sampled(game_name):
    renderer = renderer_for(game_name)
    rng = np.random.default_rng(0)
    hidden_differs = 0
    for state in _random_decision_states(game_name, 60, seed=1):
        seat = state.current_player()
        expected = observe(state, seat, renderer)
        for _ in range(4):
            other = sample_determinization(state, seat, rng)
            assert other is not None
            assert other.information_state_string(seat) == state.information_state_string(seat)
            assert observe(other, seat, renderer) == expected
            hidden_differs += other.history() != state.history()
    assert hidden_differs > 20


_RANKS = "JQKA"


def _kuhn_card(state: pyspiel.State, seat: int) -> str:
    return _RANKS[state.history()[seat]]


def _leduc_rank(card: int) -> str:
    return _RANKS[card // 2]


def _body(prompt: str) -> str:
    """The prompt without its first line (the rules, which name every card)."""
    return prompt.split("\n", 1)[1] if "\n" in prompt else ""


def _episodes(env_id: str, episodes: int, **kwargs):
    """Yield (observation, true state) at every learner observation, final ones included."""
    env = gymnasium.make(env_id, disable_env_checker=True, **kwargs).unwrapped
    for seed in range(episodes):
        obs, info = env.reset(seed=seed)
        yield obs, env.state
        done = info.get("returns") is not None
        while not done:
            obs, _, terminated, truncated, info = env.step(
                int(env.np_random.integers(len(obs["legal_actions"])))
            )
            done = terminated or truncated
            yield obs, env.state


@pytest.mark.parametrize("rule", ["random", "forfeit"])
def test_kuhn_opponent_card_never_shown(rule):
    checked = 0
    for obs, state in _episodes("lightspiel/KuhnPoker-v0", 150, illegal_rule=rule):
        me = obs["seat"]
        if len(state.history()) < 2:
            continue
        mine, theirs = _kuhn_card(state, me), _kuhn_card(state, 1 - me)
        body = _body(obs["prompt"])
        assert f"Your card: {mine}." in body
        assert not re.search(rf"\b{theirs}\b", body), (obs["prompt"], str(state))
        checked += 1
    assert checked > 300


def test_leduc_opponent_card_never_shown():
    checked = 0
    for obs, state in _episodes("lightspiel/LeducPoker-v0", 150):
        me = obs["seat"]
        history = state.history()
        mine, theirs = _leduc_rank(history[me]), _leduc_rank(history[1 - me])
        public = re.search(r"Public card: (\w)", obs["prompt"])
        if theirs == mine or (public and public.group(1) == theirs):
            continue
        body = _body(obs["prompt"])
        assert f"Your card: {mine}." in body
        assert not re.search(rf"\b{theirs}\b", body), (obs["prompt"], str(state))
        checked += 1
    assert checked > 200


def test_repeated_poker_opponent_cards_never_shown():
    checked = 0
    for obs, state in _episodes("lightspiel/RepeatedPoker-v0", 40):
        if state.is_terminal() or len(state.inner.history()) < 2:
            continue
        me = obs["seat"]
        inner_me, inner_them = state.inner_player(me), state.inner_player(1 - me)
        mine, theirs = _RANKS[state.inner.history()[inner_me]], _RANKS[state.inner.history()[inner_them]]
        body = _body(obs["prompt"])
        assert f"Your card: {mine}." in body
        assert not re.search(rf"\b{theirs}\b", body), (obs["prompt"], str(state))
        checked += 1
    assert checked > 100


def test_liars_dice_opponent_dice_never_shown():
    checked = 0
    for obs, state in _episodes("lightspiel/LiarsDice-v0", 150):
        me = obs["seat"]
        dice = [a + 1 for a in state.history()[:2]]
        line = re.search(r"Your dice: ([^.]*)\.", obs["prompt"])
        assert line is not None and line.group(1) == str(dice[me])
        # The only dice named are the seat's own (bids and moves are public; the invariance tests
        # above show they do not depend on the hidden dice).
        assert re.findall(r"dice: ([0-9 ]+)\.", obs["prompt"]) == [str(dice[me])]
        checked += 1
    assert checked > 300


def test_lewis_receiver_never_sees_the_secret():
    receiver_prompts = 0
    for obs, _ in _episodes("lightspiel/LewisSignaling-v0", 40):
        if obs["seat"] == 1:  # the receiver's decisions and its final view
            assert "Secret" not in obs["prompt"] and "Signal: " in obs["prompt"]
            receiver_prompts += 1
    assert receiver_prompts >= 40

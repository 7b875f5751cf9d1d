"""Answer parsing: documented formats, unparsed and illegal answers, and bizarre inputs."""

from __future__ import annotations

import numpy as np
import pytest

from envs import (
    INVALID_ACTION,
    ConnectFourRenderer,
    GenericRenderer,
    KuhnPokerRenderer,
    OpenSpielTextEnv,
    TicTacToeRenderer,
    renderer_for,
)

# X on cell 1 (action 0), O on cell 5 (action 4); X to move.
MOVES = [0, 4]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("5", 4),
        ("7", 6),
        ("7.", 6),
        ("Cell 7", 6),
        ("I play 7", 6),
        ("  3\n", 2),
        ("**9**", 8),
        ("(2)", 1),
        ("cell 7, then maybe 8", 6),
        ("我下7", 6),
        ("x7 is not a number but 8 is", 7),
        ("5", 4),  # occupied cell: parsed to its action, the env finds it illegal
        ("0", INVALID_ACTION),
        ("10", INVALID_ACTION),
        ("Cell 12 please", INVALID_ACTION),
        ("9" * 5000, INVALID_ACTION),
        ("007", 6),
        ("no idea", None),
        ("", None),
        ("x7", None),
        ("7th", None),
    ],
)
def test_tic_tac_toe_parse(make_ttt_state, text, expected):
    state = make_ttt_state(MOVES)
    assert TicTacToeRenderer().parse(text, state, 0) == expected


def test_tic_tac_toe_action_text_and_registry(make_ttt_state):
    state = make_ttt_state([])
    renderer = renderer_for("tic_tac_toe")
    assert isinstance(renderer, TicTacToeRenderer)
    assert [renderer.action_text(state, 0, a) for a in state.legal_actions()] == [
        str(n) for n in range(1, 10)
    ]
    assert isinstance(renderer_for("connect_four"), ConnectFourRenderer)
    assert isinstance(renderer_for("kuhn_poker(players=3)"), KuhnPokerRenderer)
    assert isinstance(renderer_for("connect_four(columns=10)"), GenericRenderer)  # unsupported size
    assert isinstance(renderer_for("hex"), GenericRenderer)


def test_tic_tac_toe_prompt_is_short(make_ttt_state):
    state = make_ttt_state(MOVES)
    prompt = TicTacToeRenderer().prompt(state, 0)
    assert prompt == (
        "Tic-tac-toe. Cells are numbered 1-9; a number marks an empty cell. You are X.\n"
        " X | 2 | 3\n"
        " 4 | O | 6\n"
        " 7 | 8 | 9\n"
        "Legal moves: 2 3 4 6 7 8 9\n"
        "Reply with one cell number."
    )
    # What every position shares comes first, the seat after it: a wave's prompts share their rules,
    # and the policy runs that prefix once a pass (Policy._shared_prefix)
    other = TicTacToeRenderer().prompt(state, 1)
    shared = next(i for i, (a, b) in enumerate(zip(prompt, other)) if a != b)
    assert prompt[:shared].endswith("a number marks an empty cell. You are ")


def test_generic_parse():
    import pyspiel

    state = pyspiel.load_game("kuhn_poker").new_initial_state()
    state.apply_action(0)
    state.apply_action(1)
    renderer = GenericRenderer()
    assert renderer.parse("Bet", state, 0) == 1
    assert renderer.parse("  pass \n", state, 0) == 0
    assert renderer.parse("I will bet now, not pass", state, 0) == 1
    assert renderer.parse("Passing is weak; Pass.", state, 0) == 0  # "Passing" is not a whole token
    assert renderer.parse("betting", state, 0) is None
    assert renderer.parse("", state, 0) is None

    c4 = pyspiel.load_game("connect_four").new_initial_state()
    assert renderer.parse("X3", c4, 0) == 3
    assert renderer.parse("I drop in x6.", c4, 0) == 6
    assert renderer.parse("column 3", c4, 0) is None


BIZARRE = [
    "",
    " ",
    "5" * 100_000,
    "a" * 100_000 + " 5",
    "\x00\x01\x02\xff\xfe" * 50,
    "".join(chr(c) for c in range(0, 0x800)),
    "\ud800\udfff broken surrogates",
    "我认为最好的一步是中间。",
    "Je joue la case cinq.",
    "\u0665",  # Arabic-Indic five: not an ASCII digit
    "-1",
    "1e9",
    "None",
    "[[[[((((",
]


@pytest.mark.parametrize("game", ["tic_tac_toe", "connect_four", "kuhn_poker"])
@pytest.mark.parametrize("rule", ["random", "retry", "forfeit"])
def test_bizarre_answers_never_crash(game, rule):
    env = OpenSpielTextEnv(game=game, opponent="random", illegal_rule=rule)
    for i, text in enumerate(BIZARRE):
        obs, info = env.reset(seed=i)
        obs, reward, terminated, truncated, info = env.step(text)
        assert info["outcome"] in ("ok", "illegal", "unparsed")
        assert obs in env.observation_space
        # An answer that names no legal move costs the penalty, and the illegal-answer rule runs.
        assert info["penalty"] == (0.0 if info["outcome"] == "ok" else 1.0)
        assert info["rule"] == (None if info["outcome"] == "ok" else rule)
        seat = info["acting_seat"]
        gained = info["returns"][seat] if terminated or truncated else 0.0
        assert reward == gained - info["penalty"], (text, info)


def test_bytes_answer_is_decoded():
    env = OpenSpielTextEnv(opponent="random", learner_seat=0)
    env.reset(seed=0)
    _, _, _, _, info = env.step(b"I play 5")
    assert info["action"] == 4 and info["outcome"] == "ok"


def test_env_outcomes_for_formats():
    env = OpenSpielTextEnv(opponent="random", learner_seat=0, illegal_rule="retry", max_retries=10)
    env.reset(seed=0)
    cases = [
        ("no number", "unparsed", False, False),
        ("42", "illegal", True, False),
        (np.int64(99), "illegal", True, False),
        (-1, "illegal", True, False),
    ]
    for answer, outcome, parsed, legal in cases:
        _, reward, terminated, _, info = env.step(answer)
        assert (info["outcome"], info["parsed"], info["legal"]) == (outcome, parsed, legal), answer
        assert info["rule"] == "retry" and info["action"] is None and reward == -1.0 and not terminated
    _, _, _, _, info = env.step(np.int32(0))  # index 0 of legal_actions = cell 1
    assert info["outcome"] == "ok" and info["action"] == 0 and info["action_text"] == "1"


def test_occupied_cell_is_illegal():
    env = OpenSpielTextEnv(opponent="random", learner_seat=1, illegal_rule="retry")
    _, info = env.reset(seed=3)
    taken = info["history"][0] + 1
    _, reward, _, _, info = env.step(f"Cell {taken}")
    assert info["parsed"] and not info["legal"] and info["outcome"] == "illegal"
    assert reward == -1.0


def test_non_text_action_type_is_rejected():
    env = OpenSpielTextEnv()
    env.reset(seed=0)
    with pytest.raises(TypeError):
        env.step(1.5)
    with pytest.raises(TypeError):
        env.step(True)

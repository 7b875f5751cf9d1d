"""The per-game renderers (prompts, action texts, answer formats), repeated poker, simultaneous
moves, and playing arbitrary OpenSpiel games through the generic renderer."""

from __future__ import annotations

import gymnasium
import pyspiel
import pytest

from envs import (
    INVALID_ACTION,
    BreakthroughRenderer,
    ConnectFourRenderer,
    GenericRenderer,
    KuhnPokerRenderer,
    LeducPokerRenderer,
    LewisSignalingRenderer,
    LiarsDiceRenderer,
    OpenSpielTextEnv,
    RepeatedPokerRenderer,
    load_game,
    observe,
    renderer_for,
    state_from_history,
)

# ------------------------------------------------------------------ connect four


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("4", 3),
        ("Column 7.", 6),
        ("I drop in 1", 0),
        ("**2**", 1),
        ("0", INVALID_ACTION),
        ("8", INVALID_ACTION),
    ]
    + [("x3", None), ("middle", None), ("", None)],
)
def test_connect_four_parse(text, expected):
    state = state_from_history("connect_four", [3, 3])
    assert ConnectFourRenderer().parse(text, state, 0) == expected


def test_connect_four_prompt_and_texts():
    state = state_from_history("connect_four", [3, 2, 3])
    renderer = renderer_for("connect_four")
    prompt = renderer.prompt(state, 1)
    assert prompt.startswith("Connect four. Drop a disc") and "wins. You are O.\n" in prompt
    assert " . . . X . . .\n . . O X . . ." in prompt
    assert [renderer.action_text(state, 1, a) for a in state.legal_actions()] == list("1234567")
    small = state_from_history("connect_four(rows=4,columns=5,x_in_row=3)", [0])
    text = renderer_for("connect_four(rows=4,columns=5,x_in_row=3)").prompt(small, 1)
    assert "Three in a row" in text and " 1 2 3 4 5\n" in text and "Legal moves: 1 2 3 4 5" in text


# ------------------------------------------------------------------ breakthrough


def test_breakthrough_texts_and_parse():
    game = "breakthrough(rows=6,columns=6)"
    state = state_from_history(game, [])
    renderer = renderer_for(game)
    assert isinstance(renderer, BreakthroughRenderer)
    texts = [renderer.action_text(state, 0, a) for a in state.legal_actions()]
    assert texts[:3] == ["a5a4", "a5b4", "b5a4"] and len(set(texts)) == len(texts)
    by_text = dict(zip(texts, state.legal_actions()))
    assert renderer.parse("b5-c4", state, 0) == by_text["b5c4"]
    assert renderer.parse("I move B5xC4!", state, 0) == by_text["b5c4"]
    assert renderer.parse("b5 c4", state, 0) == by_text["b5c4"]
    assert renderer.parse("a5a3", state, 0) == INVALID_ACTION  # well formed, not a legal move
    assert renderer.parse("forward", state, 0) is None
    prompt = renderer.prompt(state, 0)
    assert "You are black (b), moving down" in prompt and "6 b b b b b b" in prompt
    # Captures lose OpenSpiel's "*" mark.
    capture = state_from_history(game, [by_text["a5a4"]])
    capture = state_from_history(
        game,
        [by_text["a5a4"]]
        + [next(a for a in capture.legal_actions() if capture.action_to_string(a) == "b2b3")],
    )
    capture_texts = [capture.action_to_string(a) for a in capture.legal_actions()]
    assert "a4b3*" in capture_texts and "a4b3" in [
        renderer.action_text(capture, 0, a) for a in capture.legal_actions()
    ]


# ------------------------------------------------------------------ poker


def test_kuhn_texts_prompt_and_parse():
    renderer = renderer_for("kuhn_poker")
    assert isinstance(renderer, KuhnPokerRenderer)
    state = state_from_history("kuhn_poker", [1, 2])  # player 1 holds Q, player 2 holds K
    assert [renderer.action_text(state, 0, a) for a in state.legal_actions()] == ["check", "bet"]
    assert renderer.prompt(state, 0) == (
        "Kuhn poker: cards J<Q<K, one each; ante 1, bets of 1; best card left in wins. You are player 1 of 2.\n"
        "Your card: Q. Pot: 2.\n"
        "Legal moves: check bet\n"
        "Reply with one move."
    )
    state.apply_action(1)  # bet
    assert [renderer.action_text(state, 1, a) for a in state.legal_actions()] == ["fold", "call"]
    assert "Your card: K. Pot: 3.\nMoves: opponent bet." in renderer.prompt(state, 1)
    cases = [("call", 1), ("I fold.", 0), ("FOLD", 0), ("Bet", 1), ("pass", 0), ("raise", INVALID_ACTION)]
    cases += [("check", INVALID_ACTION), ("calling", None), ("", None), ("I'll call, not fold", 1)]
    for text, expected in cases:
        assert renderer.parse(text, state, 1) == expected, text
    three = state_from_history("kuhn_poker(players=3)", [0, 1, 2, 0, 1])
    assert "Moves: player 1 checked, player 2 bet." in renderer.prompt(three, 2)
    assert "cards J<Q<K<A" in renderer.prompt(three, 2)


def test_leduc_texts_prompt_and_parse():
    renderer = renderer_for("leduc_poker")
    assert isinstance(renderer, LeducPokerRenderer)
    state = state_from_history("leduc_poker", [2, 5])  # Q for player 1, K for player 2
    assert [renderer.action_text(state, 0, a) for a in state.legal_actions()] == ["check", "bet"]
    state.apply_action(2)  # bet
    assert [renderer.action_text(state, 1, a) for a in state.legal_actions()] == ["fold", "call", "raise"]
    prompt = renderer.prompt(state, 1)
    assert "Your card: K. Pot: 4; you have put in 1.\nRound 1: opponent bet." in prompt
    for text, expected in [
        ("raise", 2),
        ("call", 1),
        ("fold", 0),
        ("check", INVALID_ACTION),
        ("bet", INVALID_ACTION),
    ]:
        assert renderer.parse(text, state, 1) == expected, text
    for action in (1, 0):  # call; the public card J comes; round 2
        state.apply_action(action) if action else None
    state.apply_action(0)
    assert state.current_player() == 0
    prompt = renderer.prompt(state, 0)
    assert "Public card: J." in prompt and "Round 1: you bet, opponent called." in prompt
    assert [renderer.action_text(state, 0, a) for a in state.legal_actions()] == ["check", "bet"]
    assert renderer.parse("fold", state, 0) == 0  # a named move, illegal here (nothing to match)
    assert renderer_for("leduc_poker(suit_isomorphism=True)").__class__ is GenericRenderer


def test_liars_dice_texts_and_parse():
    renderer = renderer_for("liars_dice")
    assert isinstance(renderer, LiarsDiceRenderer)
    state = state_from_history("liars_dice", [3, 1, 8])  # dice 4 and 2; player 1 bids 2x3
    texts = [renderer.action_text(state, 1, a) for a in state.legal_actions()]
    assert texts == ["2x4", "2x5", "2x6", "liar"]
    prompt = renderer.prompt(state, 1)
    assert "Your dice: 2.\nBids: opponent 2x3." in prompt and "6s are wild" in prompt
    cases = [
        ("2x5", 10), ("2 x 5", 10), ("2-5", 10), ("2*5", 10), ("two 5s", 10), ("I bid 2 5's.", 10),
        ("Liar!", 12), ("I challenge", 12), ("liar, not 2x6", 12), ("3x1", INVALID_ACTION), ("1x7", INVALID_ACTION),
        ("1x2", 1), ("five", None), ("", None),
    ]  # fmt: skip
    for text, expected in cases:
        assert renderer.parse(text, state, 1) == expected, text
    two = state_from_history("liars_dice(numdice=2)", [0, 5, 2, 2])
    assert "Your dice: 1 6." in renderer.prompt(two, 0)


def test_lewis_signaling_texts_and_parse():
    renderer = renderer_for("lewis_signaling")
    assert isinstance(renderer, LewisSignalingRenderer)
    state = state_from_history("lewis_signaling", [1])
    assert [renderer.action_text(state, 0, a) for a in state.legal_actions()] == ["red", "green", "blue"]
    assert "Secret: 2." in renderer.prompt(state, 0)
    assert renderer.parse("I send Green.", state, 0) == 1
    assert renderer.parse("yellow", state, 0) == INVALID_ACTION
    assert renderer.parse("2", state, 0) is None
    state.apply_action(2)
    prompt = renderer.prompt(state, 1)
    assert "Signal: blue." in prompt and "Secret" not in prompt
    assert [renderer.action_text(state, 1, a) for a in state.legal_actions()] == ["1", "2", "3"]
    assert renderer.parse("My guess is 3", state, 1) == 2 and renderer.parse("4", state, 1) == INVALID_ACTION
    odd_game = pyspiel.load_game(
        "lewis_signaling", {"num_states": 2, "num_messages": 2, "payoffs": "0, 1, 1, 0"}
    )
    odd_state = odd_game.new_initial_state()
    odd_state.apply_action(0)
    assert "secret 1: 0 1; secret 2: 1 0" in renderer_for(odd_game).prompt(odd_state, 0)


# ------------------------------------------------------------------ repeated poker


def test_repeated_poker_bankrolls_rotation_and_returns():
    env = gymnasium.make("lightspiel/RepeatedPoker-v0", opponent="random", learner_seat=0).unwrapped
    obs, info = env.reset(seed=3)
    assert info["bankrolls"] == [6.0, 6.0] and info["round"] == 1
    assert "Hand 1 of 5. Bankrolls: you 6, opponent 6." in obs["prompt"]
    first_movers, hands, done = set(), set(), False
    while not done:
        state = env.state
        hands.add(state.hand_index)
        if not state.inner.history()[2:]:  # no bet yet in this hand: who acts first?
            first_movers.add((state.hand_index, obs["seat"]))
        assert f"Hand {info['round']} of 5." in obs["prompt"]
        assert f"Bankrolls: you {info['bankrolls'][0]:g}, opponent {info['bankrolls'][1]:g}." in obs["prompt"]
        obs, reward, terminated, truncated, info = env.step(0)
        assert sum(info["bankrolls"]) == 12.0
        done = terminated or truncated
    assert info["returns"] == [b - 6.0 for b in info["bankrolls"]]
    assert reward == info["returns"][0]
    assert all((hand % 2 == 0) == (seat == 0) for hand, seat in first_movers)  # seats alternate first


def test_repeated_poker_bust_ends_the_match_and_leduc_base():
    game = load_game("lightspiel_repeated_poker(base=kuhn_poker,rounds=10,bankroll=3)")
    assert game.min_utility() == -3.0 and game.max_utility() == 3.0
    state = game.new_initial_state()
    # Hand 1: seat 0 gets K, seat 1 J; bet, call -> seat 1 loses 2 and is bust (1 < 2).
    for action in (2, 0, 1, 1):
        state.apply_action(action)
    assert state.is_terminal() and state.returns() == [2.0, -2.0] and state.hand_index == 1
    leduc = load_game("lightspiel_repeated_poker(base=leduc_poker,rounds=2)")
    assert leduc.get_parameters()["bankroll"] == 39
    prompt = renderer_for(leduc).prompt(
        state_from_history("lightspiel_repeated_poker(base=leduc_poker,rounds=2)", [0, 5]), 0
    )
    assert (
        "2 hands of Leduc poker" in prompt
        and "Your card: J." in prompt
        and "Legal moves: check bet" in prompt
    )
    assert isinstance(renderer_for(leduc), RepeatedPokerRenderer)
    for bad, match in [
        ("base=chess", "base must be"),
        ("bankroll=1", "cannot cover"),
        ("rounds=0", "rounds"),
    ]:
        with pytest.raises(ValueError, match=match):
            load_game(f"lightspiel_repeated_poker({bad})")


def test_repeated_poker_history_replays():
    env = gymnasium.make("lightspiel/RepeatedPoker-v0", opponent="heuristic").unwrapped
    obs, info = env.reset(seed=1)
    for _ in range(4):
        obs, _, terminated, _, info = env.step(1)
        if terminated:
            break
        state = state_from_history(info["game"], info["history"])
        assert env.renderer.prompt(state, obs["seat"]) == obs["prompt"]


# ------------------------------------------------------------------ simultaneous moves


def test_simultaneous_learner_answers_then_joint_action():
    env = OpenSpielTextEnv(game="matrix_rps", opponent="random", learner_seat=1)
    obs, info = env.reset(seed=0)
    assert info["simultaneous"] and obs["seat"] == 1 and obs["legal_actions"] == ("Rock", "Paper", "Scissors")
    assert "All players choose at the same time." in obs["prompt"]
    obs, reward, terminated, _, info = env.step("I choose paper")
    assert terminated and info["action_text"] == "Paper" and info["opponent_actions"][0][0] == 0
    assert info["history"][1] == 1 and reward == info["returns"][1]


def test_simultaneous_self_play_collects_every_seat():
    env = OpenSpielTextEnv(game="goofspiel(num_cards=3)", opponent="self")
    obs, info = env.reset(seed=1)
    history = list(info["history"])
    obs, reward, _, _, info = env.step(0)  # seat 0 answers; nothing applied yet
    assert info["acting_seat"] == 0 and info["seat"] == 1 and info["history"] == history and reward == 0.0
    assert obs["seat"] == 1 and "You are player 1" in obs["prompt"]
    _, _, _, _, info = env.step("garbage")  # seat 1: unparsed -> random bid, then the joint action
    assert info["rule"] == "random" and len(info["history"]) > len(history)
    state = state_from_history(info["game"], info["history"])
    assert str(state) == str(env.state)


@pytest.mark.parametrize("rule", ["random", "forfeit", "retry"])
def test_simultaneous_rules(rule):
    env = OpenSpielTextEnv(
        game="oshi_zumo(coins=6,size=2)", opponent="random", illegal_rule=rule, max_turns=30
    )
    for seed in range(3):
        obs, info = env.reset(seed=seed)
        seat, start, outcomes, done = info["learner_seat"], info["history"], [], False
        while not done:
            obs, _, terminated, truncated, info = env.step("???" if seed == 0 else 0)
            outcomes.append((info["outcome"], info["rule"]))
            done = terminated or truncated
        if seed > 0:  # index answers are always legal
            assert {outcome for outcome, _ in outcomes} == {"ok"}
        elif rule == "forfeit":  # the first answer ends the game before any joint action
            assert outcomes == [("unparsed", "forfeit")] and info["history"] == start
            assert info["returns"][seat] == -1.0 and info["returns"][1 - seat] == 1.0
            continue
        elif rule == "retry":
            assert outcomes[:3] == [("unparsed", "retry"), ("unparsed", "retry"), ("unparsed", "random")]
        else:
            assert set(outcomes) == {("unparsed", "random")}
        # The joint actions played are all in the history: replaying it gives the same outcome.
        assert len(info["history"]) > len(start)
        assert list(state_from_history(info["game"], info["history"]).returns()) == info["returns"]


# ------------------------------------------------------------------ any OpenSpiel game


ANY_GAMES = [
    "kuhn_poker(players=4)",
    "leduc_poker(players=3)",
    "liars_dice(numdice=2)",
    "goofspiel(num_cards=4,imp_info=True)",
    "first_sealed_auction",
    "blotto(coins=4,fields=3)",
    "pig(players=3,winscore=12)",
    "hex(board_size=3)",
    "dots_and_boxes(num_rows=2,num_cols=2)",
    "tiny_hanabi",
    "trade_comm(num_items=3)",
    "catch",
    "othello",
    "phantom_ttt",
]


@pytest.mark.parametrize("game", ANY_GAMES)
def test_any_openspiel_game_plays(game):
    env = OpenSpielTextEnv(game=game, opponent="random", max_turns=40)
    for seed in range(2):
        obs, info = env.reset(seed=seed)
        done = info.get("returns") is not None
        while not done:
            assert obs in env.observation_space and obs["legal_actions"]
            answer = (
                obs["legal_actions"][-1] if seed else int(env.np_random.integers(len(obs["legal_actions"])))
            )
            obs, _, terminated, truncated, info = env.step(answer)
            assert info["outcome"] == "ok"
            done = terminated or truncated
        assert len(info["returns"]) == env.num_players


def test_observe_matches_the_env():
    env = gymnasium.make("lightspiel/LeducPoker-v0").unwrapped
    obs, _ = env.reset(seed=0)
    prompt, legal, texts = observe(env.state, obs["seat"])
    assert (prompt, texts) == (obs["prompt"], obs["legal_actions"]) and legal == env.state.legal_actions()


@pytest.mark.parametrize(
    ("game", "match"),
    [
        ("breakthru", "breakthru.*'breakthrough'"),
        ("qwertyuiop", "OpenSpiel offers: .*tic_tac_toe"),
        (
            "breakthrough(rows=x)",
            r"'breakthrough\(rows=x\)'.*Wrong type.*columns \(int, default 8\), rows \(int",
        ),
        ("tic_tac_toe(size=4)", "Unknown parameter 'size'.*tic_tac_toe takes no parameters"),
        ("breakthrough(rows=6", "closing bracket"),
        ("mfg_garnet", "MEAN_FIELD"),
        ("crossword", "cannot be played as text"),
    ],
)
def test_bad_game_strings(game, match):
    with pytest.raises(ValueError, match=match):
        gymnasium.make("lightspiel/OpenSpiel-v0", game=game, disable_env_checker=True)

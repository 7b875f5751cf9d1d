"""Record files (validation, durability) and preference-pair construction."""

import json

import pytest

from datamodules.pairs import build_pairs, margin_pairs, oracle_pairs, split_pairs, state_key
from datamodules.records import (
    Episode,
    EpisodeWriter,
    PreferencePair,
    Turn,
    read_complete_episodes,
    read_jsonl,
    to_json,
    write_jsonl_atomic,
)
from modules.errors import ConfigError, DataFileError

EMPTY = "Tic-tac-toe board, X to move"


def _turn(prompt, action_text, seat=0, outcome="ok", history=(), completion=None, legal=("1", "5", "9")):
    return Turn(
        seat=seat,
        prompt=prompt,
        legal_actions=list(legal),
        completion=completion if completion is not None else action_text,
        action=int(action_text) - 1 if outcome == "ok" else None,
        action_text=action_text if outcome == "ok" else None,
        parsed=outcome != "unparsed",
        legal=outcome == "ok",
        outcome=outcome,
        rule=None if outcome == "ok" else "random",
        history=list(history),
        reward=0.0,
    )


def _episode(eid, turns, returns, penalties=(0.0, 0.0)):
    return Episode(
        episode_id=eid,
        game="tic_tac_toe",
        env_id="lightspiel/TicTacToe-v0",
        seed=0,
        opponent="random",
        learner_seat=0,
        turns=turns,
        returns=list(returns),
        penalties=list(penalties),
    )


# ---------------------------------------------------------------- files
def test_episode_round_trip_and_append_only_writer(tmp_path):
    path = tmp_path / "episodes.jsonl"
    eps = [_episode("a", [_turn(EMPTY, "5")], [1, -1]), _episode("b", [_turn(EMPTY, "1")], [-1, 1])]
    with EpisodeWriter(path) as w:
        w.write(eps[0])
    with EpisodeWriter(path) as w:  # a second run appends
        w.write(eps[1])
    assert read_jsonl(path, Episode) == eps


def test_an_episode_file_written_before_the_answer_tables_still_loads(tmp_path):
    """Lines without ``answer_logps`` and ``policy_fingerprint`` (files of earlier versions) load,
    with neither recorded."""
    row = json.loads(to_json(_episode("a", [_turn(EMPTY, "5")], [1, -1])))
    row.pop("policy_fingerprint")
    row["turns"][0].pop("answer_logps")
    path = tmp_path / "eps.jsonl"
    path.write_text(json.dumps(row) + "\n")
    (episode,) = read_jsonl(path, Episode)
    assert episode.policy_fingerprint is None and episode.turns[0].answer_logps is None
    assert episode == _episode("a", [_turn(EMPTY, "5")], [1, -1])


def test_torn_last_line_from_a_killed_run_is_dropped_and_appends_stay_clean(tmp_path):
    path = tmp_path / "episodes.jsonl"
    good = _episode("a", [_turn(EMPTY, "5")], [1, -1])
    path.write_text(to_json(good) + "\n" + to_json(good)[:50])
    assert read_complete_episodes(path) == [good]
    with EpisodeWriter(path) as w:
        w.write(good)
    assert read_jsonl(path, Episode) == [good, good]


@pytest.mark.parametrize(
    "mutate, field, problem",
    [
        (lambda d: d.pop("returns"), "returns", "missing"),
        (lambda d: d.update(seed="seven"), "seed", "expected int"),
        (lambda d: d["turns"][0].update(legal_actions="159"), "turns[0].legal_actions", "expected list"),
        (lambda d: d["turns"][0].pop("prompt"), "turns[0].prompt", "missing"),
        (
            lambda d: d["turns"][0].update(answer_logps={"5": "-0.3"}),
            "turns[0].answer_logps",
            "expected dict[str, float]",
        ),
    ],
)
def test_bad_episode_line_names_file_line_and_field(tmp_path, mutate, field, problem):
    good = json.loads(to_json(_episode("a", [_turn(EMPTY, "5")], [1, -1])))
    bad = json.loads(json.dumps(good))
    mutate(bad)
    path = tmp_path / "eps.jsonl"
    path.write_text(json.dumps(good) + "\n" + json.dumps(bad) + "\n")
    with pytest.raises(DataFileError) as err:
        read_jsonl(path, Episode)
    msg = str(err.value)
    assert f"{path}:2:" in msg and repr(field) in msg and problem in msg


def test_invalid_json_and_missing_file_are_named(tmp_path):
    path = tmp_path / "pairs.jsonl"
    path.write_text('{"prompt": "p"\n')
    with pytest.raises(DataFileError, match=r"pairs.jsonl:1: .*not valid JSON"):
        read_jsonl(path, PreferencePair)
    with pytest.raises(DataFileError, match="no such file"):
        read_jsonl(tmp_path / "absent.jsonl", PreferencePair)


def test_atomic_write_leaves_the_old_file_when_writing_fails(tmp_path):
    path = tmp_path / "pairs.jsonl"
    path.write_text("old\n")

    def records():
        yield "new"
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        write_jsonl_atomic(path, records())
    assert path.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["pairs.jsonl"]


# ---------------------------------------------------------------- pairs
def test_margin_pairs_prefer_moves_from_better_games_at_the_same_state():
    eps = [
        _episode("win", [_turn(EMPTY, "5")], [1, -1]),
        _episode("draw", [_turn(EMPTY, "1")], [0, 0]),
        _episode("loss", [_turn(EMPTY, "9")], [-1, 1]),
        _episode("other-state", [_turn("another board", "9")], [1, -1]),
    ]
    pairs = margin_pairs(eps, margin=0.5, max_pairs_per_state=10)
    got = sorted((p.chosen, p.rejected, p.chosen_score, p.rejected_score) for p in pairs)
    assert got == [("1", "9", 0.0, -1.0), ("5", "1", 1.0, 0.0), ("5", "9", 1.0, -1.0)]
    assert margin_pairs(eps, margin=1.5) and all(p.chosen == "5" for p in margin_pairs(eps, margin=1.5))
    assert margin_pairs(eps, margin=2.5) == []


def test_margin_pairs_count_penalties_and_keep_illegal_answers_verbatim():
    eps = [
        _episode("ok", [_turn(EMPTY, "5")], [0, 0]),
        _episode("bad", [_turn(EMPTY, None, outcome="unparsed", completion="I pass")], [0, 0], [1.0, 0.0]),
    ]
    (pair,) = margin_pairs(eps, margin=0.5)
    assert (pair.chosen, pair.rejected, pair.rejected_score) == ("5", "I pass", -2.0)


def test_margin_pairs_never_prefer_an_illegal_answer_even_from_a_won_game():
    eps = [
        _episode("lost", [_turn(EMPTY, "5")], [-1, 1]),
        _episode(
            "won", [_turn(EMPTY, None, outcome="illegal", completion="the middle")], [1, -1], [1.0, 0.0]
        ),
    ]
    (pair,) = margin_pairs(eps, margin=0.5)
    assert (pair.chosen, pair.rejected) == ("5", "the middle")


def test_oracle_pairs_reject_illegal_answers_and_need_a_positive_margin():
    import pyspiel

    from envs import OpenSpielTextEnv

    env = OpenSpielTextEnv(game="tic_tac_toe", opponent="self")
    state = pyspiel.load_game("tic_tac_toe").new_initial_state()
    for a in [0, 3, 1, 4]:
        state.apply_action(a)
    prompt = env.renderer.prompt(state, 0)
    legal = [env.renderer.action_text(state, 0, a) for a in state.legal_actions()]
    bad = _turn(prompt, None, outcome="unparsed", history=[0, 3, 1, 4], completion="hmm", legal=legal)
    pairs = oracle_pairs([_episode("e", [bad], [-1, 1])], margin=0.5, max_pairs_per_state=10)
    assert ("3", "hmm") in {(p.chosen, p.rejected) for p in pairs}
    assert all(p.chosen != p.rejected for p in pairs)
    with pytest.raises(ValueError, match="margin"):
        oracle_pairs([_episode("e", [bad], [-1, 1])], margin=0.0)


def _ttt_episode(history, played, eid="e", returns=(0, 0)):
    """One learner turn at the tic-tac-toe position after ``history`` (X to move), playing ``played``."""
    import pyspiel

    from envs import OpenSpielTextEnv

    env = OpenSpielTextEnv(game="tic_tac_toe", opponent="self")
    state = pyspiel.load_game("tic_tac_toe").new_initial_state()
    for a in history:
        state.apply_action(a)
    prompt = env.renderer.prompt(state, 0)
    legal = [env.renderer.action_text(state, 0, a) for a in state.legal_actions()]
    return _episode(eid, [_turn(prompt, played, history=history, legal=legal)], list(returns))


def _x_to_win_episode():
    """X: cells 1,2; O: cells 4,5 (history X1, O4, X2, O5); X to move, and played 7."""
    return _ttt_episode([0, 3, 1, 4], "7", returns=(-1, 1))


def test_oracle_pairs_prefer_the_winning_move():
    """X: cells 1,2; O: cells 4,5; X to move. 3 wins at once (+1); 6 blocks O and draws (0);
    7, 8 or 9 let O complete 4-5-6 (-1)."""
    ep = _x_to_win_episode()
    pairs = oracle_pairs([ep], oracle="minimax", margin=0.5, max_pairs_per_state=10)
    assert {p.chosen for p in pairs} == {"3"}
    assert {p.rejected for p in pairs} == {"6", "7", "8", "9"}
    assert {p.rejected: p.rejected_score for p in pairs} == {"6": 0.0, "7": -1.0, "8": -1.0, "9": -1.0}
    assert all(p.chosen_score == 1.0 for p in pairs)
    assert all(p.strategy == "oracle:minimax" for p in pairs)


def test_discounted_oracle_pairs_teach_the_quick_win_and_the_block_of_a_lost_position():
    """Where plain minimax values every move alike (all win, or all lose) it makes no pair; with
    ``discount`` and a margin under the gap it makes, the quick win and the slow loss are chosen."""
    won = _ttt_episode([0, 1, 3, 2], "5", "won")  # X: 1, 4; O: 2, 3. 7 wins at once; every move wins.
    lost = _ttt_episode([0, 2, 1, 5], "5", "lost")  # X: 1, 2; O: 3, 6. O threatens 9 and forks after it.
    kwargs = dict(oracle="minimax", max_pairs_per_state=10)
    assert oracle_pairs([won, lost], margin=0.05, **kwargs) == []
    pairs = oracle_pairs([won, lost], margin=0.05, discount=0.95, **kwargs)
    by_state = {}
    for p in pairs:
        by_state.setdefault(p.chosen, set()).add(p.rejected)
    assert by_state == {"7": {"5", "6", "8", "9"}, "9": {"4", "5", "7", "8"}}
    # Between outcomes the gaps stay above the quickstart's plain margin: a discounted win is still
    # preferred to a draw, as at discount 1.
    ep = _x_to_win_episode()
    plain = oracle_pairs([ep], margin=0.5, **kwargs)
    assert {(p.chosen, p.rejected) for p in oracle_pairs([ep], margin=0.5, discount=0.95, **kwargs)} == {
        (p.chosen, p.rejected) for p in plain
    }
    from datamodules.preference import PreferenceDataModule

    with pytest.raises(ConfigError, match=r"--data.oracle_discount must be in \(0, 1\]"):
        PreferenceDataModule(env="lightspiel/TicTacToe-v0", oracle_discount=0.0)
    with pytest.raises(ConfigError, match="--data.oracle mcts gives estimates it does not discount"):
        PreferenceDataModule(env="lightspiel/TicTacToe-v0", oracle_discount=0.9, oracle="mcts")
    with pytest.raises(ConfigError, match="values, which strategy 'margin' does not use"):
        PreferenceDataModule(env="lightspiel/TicTacToe-v0", oracle_discount=0.9, strategy="margin")
    # With an SFT stage the discount applies to its gold moves, whatever the pair strategy.
    staged = PreferenceDataModule(
        env="lightspiel/TicTacToe-v0", strategy="margin", sft_iterations=1, oracle_discount=0.9
    )
    assert staged.oracle_discount == 0.9


def test_illegal_negatives_are_taken_cells_the_env_judges_illegal():
    """X: cells 1,2; O: cells 4,5. With ``illegal_negatives`` the winning move 3 is also preferred
    to taken cells, written as the env reads them: stepping the env with each is an illegal move."""
    from envs import OpenSpielTextEnv

    history = [0, 3, 1, 4]
    env = OpenSpielTextEnv(game="tic_tac_toe", opponent="self", illegal_rule="forfeit")
    ep = _x_to_win_episode()
    plain = oracle_pairs([ep], oracle="minimax", margin=0.5, max_pairs_per_state=10)
    pairs = oracle_pairs([ep], oracle="minimax", margin=0.5, max_pairs_per_state=10, illegal_negatives=3)
    extra = [p for p in pairs if p.strategy == "oracle:minimax:illegal-move"]
    assert len(pairs) == len(plain) + 3 and {p.chosen for p in extra} == {"3"}
    assert {p.rejected for p in extra} < {"1", "2", "4", "5"} and all(p.rejected_score == -2.0 for p in extra)
    for p in extra:
        env.reset(seed=0, options={"history": history})
        _, _, _, _, info = env.step(p.rejected)
        assert info["parsed"] and not info["legal"]
    with pytest.raises(ValueError, match="illegal_negatives"):
        from datamodules.preference import PreferenceDataModule

        PreferenceDataModule(env="lightspiel/TicTacToe-v0", strategy="margin", illegal_negatives=2)


def test_ranked_only_drops_the_states_where_every_legal_move_is_worth_the_same():
    """The won position (every move wins under plain minimax) gives only taken-cell pairs; with
    ``ranked_only`` it gives none, while the position with a worse legal move keeps all of its pairs,
    its taken cells included. A discount ranks the won position's moves, so it is kept again."""
    won = _ttt_episode([0, 1, 3, 2], "5", "won")  # X: 1, 4; O: 2, 3. Every move wins.
    ep = _x_to_win_episode()
    kwargs = dict(oracle="minimax", margin=0.5, max_pairs_per_state=10, illegal_negatives=2)
    every = oracle_pairs([won, ep], **kwargs)
    ranked = oracle_pairs([won, ep], ranked_only=True, **kwargs)
    won_key = state_key(won.game, won.turns[0])
    assert {p.strategy for p in every if p.state_key == won_key} == {"oracle:minimax:illegal-move"}
    assert [p.pair_id for p in ranked] == [p.pair_id for p in every if p.state_key != won_key]
    assert {p.rejected for p in ranked} >= {"6", "7", "8", "9"}
    discounted = oracle_pairs([won], ranked_only=True, discount=0.95, **{**kwargs, "margin": 0.05})
    assert {p.chosen for p in discounted} == {"7"}
    from datamodules.preference import PreferenceDataModule

    # The datamodule hands it to the pair builder (what `--data.init_args.ranked_only true` sets).
    data = PreferenceDataModule(env="lightspiel/TicTacToe-v0", ranked_only=True)
    assert data._pair_options()["ranked_only"] is True
    with pytest.raises(ConfigError, match="--data.ranked_only needs strategy: oracle"):
        PreferenceDataModule(env="lightspiel/TicTacToe-v0", strategy="margin", ranked_only=True)


def test_split_is_deterministic_and_never_puts_a_state_on_both_sides():
    eps = [
        _episode(f"e{i}", [_turn(f"board {i % 40}", "5" if i % 3 else "9")], [1 if i % 3 else -1, 0])
        for i in range(200)
    ]
    pairs = build_pairs(eps, "margin", margin=0.5, max_pairs_per_state=5)
    train, evals = split_pairs(pairs, eval_ratio=0.25, seed=3)
    assert train and evals
    assert not {p.state_key for p in train} & {p.state_key for p in evals}
    assert split_pairs(pairs, eval_ratio=0.25, seed=3) == (train, evals)
    assert split_pairs(pairs, eval_ratio=0.25, seed=4) != (train, evals)


def test_state_key_depends_on_game_seat_and_prompt():
    t0, t1 = _turn("p", "5", seat=0), _turn("p", "5", seat=1)
    assert state_key("tic_tac_toe", t0) != state_key("tic_tac_toe", t1)
    assert state_key("tic_tac_toe", t0) != state_key("connect_four", t0)
    assert state_key("tic_tac_toe", t0) == state_key("tic_tac_toe", _turn("p", "9", seat=0))

"""The batched rollout engine and the preference datamodule on a tiny random-init model."""

import json

import pytest

from datamodules import PreferenceDataModule, RolloutEngine, read_jsonl
from datamodules.pairs import oracle_pairs
from datamodules.records import Episode, PreferencePair
from modules.errors import ConfigError, DataFileError

ENV = "lightspiel/TicTacToe-v0"


def test_rollout_writes_one_line_per_finished_episode_with_metrics(tiny_policy, tmp_path):
    path = tmp_path / "episodes.jsonl"
    engine = RolloutEngine(ENV, {"opponent": "random"}, num_envs=4)
    result = engine.play(tiny_policy, seeds=list(range(10)), mode="score", out_path=path, progress=None)
    on_disk = read_jsonl(path, Episode)
    assert len(result.episodes) == 10 and sorted(e.seed for e in on_disk) == list(range(10))
    assert [e.seed for e in result.episodes] == list(range(10))  # returned in seed order
    m = result.metrics
    assert m["win_rate"] + m["draw_rate"] + m["loss_rate"] == pytest.approx(1.0)
    assert m["parse_rate"] == 1.0 and m["illegal_rate"] == 0.0  # score mode is legal by construction
    for ep in result.episodes:
        assert ep.turns and all(t.seat == ep.learner_seat for t in ep.turns)
        # The recorded answers replay to the recorded game: each turn's state is the previous turn's
        # state plus the learner's move and the opponent's replies.
        for before, after in zip(ep.turns, ep.turns[1:]):
            assert after.history[: len(before.history) + 1] == [*before.history, before.action]


def test_generate_mode_records_what_the_env_made_of_each_answer(tiny_policy, tmp_path):
    """A random tiny model answers gibberish: each turn records its text, and the env's verdict on it
    agrees with the renderer's parse of that text at the recorded state."""
    from envs import renderer_for, state_from_history

    engine = RolloutEngine(ENV, {"opponent": "random", "illegal_rule": "random"}, num_envs=3)
    result = engine.play(tiny_policy, seeds=[1, 2, 3], mode="generate", progress=None)
    turns = [t for e in result.episodes for t in e.turns]
    renderer = renderer_for("tic_tac_toe")
    for t in turns:
        state = state_from_history("tic_tac_toe", t.history)
        parsed = renderer.parse(t.completion, state, t.seat)
        assert t.parsed == (parsed is not None)
        assert t.legal == (parsed in state.legal_actions())
        assert (t.rule == "random") == (not t.legal)
        assert t.action in state.legal_actions()  # the applied move is legal whatever the answer


def test_same_seeds_replay_the_same_games(tiny_policy):
    engine = RolloutEngine(ENV, {"opponent": "random"}, num_envs=2)
    a = engine.play(tiny_policy, seeds=[5, 6, 7], greedy=True, progress=None)
    b = engine.play(tiny_policy, seeds=[5, 6, 7], greedy=True, progress=None)
    assert [[t.action for t in e.turns] for e in a.episodes] == [
        [t.action for t in e.turns] for e in b.episodes
    ]


def test_answer_logps_record_every_answer_of_a_learner_decision_and_leave_the_games_as_they_were(
    tiny_policy, tmp_path
):
    """With ``answer_logps`` each learner decision in score mode records the log-probability of every
    legal move and every taken cell (what oracle pairs' illegal negatives name), each episode carries
    the learner's fingerprint, and the games are the ones played without it. The records survive the
    episodes file. Seated players (not the engine's learner) record none."""
    from datamodules.pairs import illegal_texts
    from envs import renderer_for, state_from_history

    engine = RolloutEngine(ENV, {"opponent": "random"}, num_envs=3)
    plain = engine.play(tiny_policy, seeds=[1, 2, 3], temperature=2.0, progress=None).episodes
    path = tmp_path / "episodes.jsonl"
    played = engine.play(
        tiny_policy, seeds=[1, 2, 3], temperature=2.0, progress=None, answer_logps=True, out_path=path
    ).episodes
    assert [[t.action for t in e.turns] for e in played] == [[t.action for t in e.turns] for e in plain]
    assert all(t.answer_logps is None for e in plain for t in e.turns)
    renderer = renderer_for("tic_tac_toe")
    for episode in played:
        assert episode.policy_fingerprint == tiny_policy.fingerprint()
        for turn in episode.turns:  # the env plays the random opponent: every turn is the learner's
            state = state_from_history("tic_tac_toe", turn.history)
            taken = illegal_texts(renderer, state, turn.seat)
            assert len(taken) == len(turn.history) and set(turn.answer_logps) == set(turn.legal_actions) | set(taken)
            assert turn.answer_logps[turn.completion] == pytest.approx(turn.logp)
    assert read_jsonl(path, Episode) == played
    # Seated players are not the engine's learner: their games record no tables.
    from datamodules.players import AgentPlayer, PolicyPlayer

    seated = [PolicyPlayer(tiny_policy), AgentPlayer("random")]
    games = engine.play(
        tiny_policy, seeds=[1, 2], progress=None, answer_logps=True, seats=lambda k: seated
    ).episodes
    assert all(e.policy_fingerprint is None for e in games)
    assert all(t.answer_logps is None for e in games for t in e.turns)


def test_games_against_several_opponents_share_waves_and_stay_the_games_played_alone(tiny_policy):
    """Per-game opponents step every opponent's games together (one act call a wave for all of
    them), and each sampled game is move for move the one its opponent's own engine plays."""
    seeds = [11, 12, 13, 14, 15, 16]
    opponents = ["random", "mcts", "self", "random", "mcts", "self"]
    sizes = []
    act = tiny_policy.act

    def counting_act(observations, **kwargs):
        sizes.append(len(observations))
        return act(observations, **kwargs)

    tiny_policy.act = counting_act
    try:
        mixed = RolloutEngine(ENV, {"illegal_rule": "random"}, num_envs=6).play(
            tiny_policy, seeds, mode="score", temperature=1.5, opponents=opponents, progress=None
        )
        first_wave = sizes[0]
        alone = {}
        for opponent in ("random", "mcts", "self"):
            mine = [s for s, o in zip(seeds, opponents) if o == opponent]
            engine = RolloutEngine(ENV, {"illegal_rule": "random", "opponent": opponent}, num_envs=2)
            for e in engine.play(tiny_policy, mine, mode="score", temperature=1.5, progress=None).episodes:
                alone[e.seed] = e
    finally:
        tiny_policy.act = act
    assert first_wave == 6  # every game's first decision in one call, whichever its opponent
    assert [e.opponent for e in mixed.episodes] == opponents
    for e in mixed.episodes:
        other = alone[e.seed]
        assert e.learner_seat == other.learner_seat and e.returns == other.returns
        assert [(t.seat, t.action, t.history) for t in e.turns] == [
            (t.seat, t.action, t.history) for t in other.turns
        ]
    with pytest.raises(ConfigError, match="2 opponents for 6 games"):
        RolloutEngine(ENV, {}, num_envs=2).play(tiny_policy, seeds, opponents=["random", "mcts"], progress=None)


def test_per_game_temperatures_split_a_wave_by_setting_and_each_game_is_the_one_played_alone(tiny_policy):
    """A game at temperature 0 is the greedy game its seed gives alone; a sampled one is the game
    sampled alone at its temperature; each wave goes to one act call per setting."""
    seeds = [21, 22, 23, 24, 25, 26]
    temperatures = [0, 1.5, 0, None, 0, 1.5]
    calls = []
    act = tiny_policy.act

    def recording_act(observations, **kwargs):
        calls.append((len(observations), kwargs["greedy"], kwargs["temperature"]))
        return act(observations, **kwargs)

    tiny_policy.act = recording_act
    try:
        engine = RolloutEngine(ENV, {"opponent": "random"}, num_envs=6)
        mixed = engine.play(tiny_policy, seeds, temperature=3.0, temperatures=temperatures, progress=None)
        first_wave = sorted(calls[:3], key=str)
        alone = {}
        for setting, (greedy, temp) in {0: (True, 3.0), 1.5: (False, 1.5), None: (False, 3.0)}.items():
            mine = [s for s, t in zip(seeds, temperatures) if t == setting]
            for e in engine.play(tiny_policy, mine, greedy=greedy, temperature=temp, progress=None).episodes:
                alone[e.seed] = e
    finally:
        tiny_policy.act = act
    assert first_wave == sorted([(3, True, 3.0), (2, False, 1.5), (1, False, 3.0)], key=str)
    for e in mixed.episodes:
        assert [(t.seat, t.action) for t in e.turns] == [(t.seat, t.action) for t in alone[e.seed].turns]
    # The settings differ in what they play: the greedy and the sampled game of one seed part ways.
    sampled = engine.play(tiny_policy, [21, 23, 25], temperature=3.0, progress=None).episodes
    assert [[t.action for t in e.turns] for e in sampled] != [
        [t.action for t in alone[s].turns] for s in (21, 23, 25)
    ]
    with pytest.raises(ConfigError, match="2 temperatures for 6 games"):
        engine.play(tiny_policy, seeds, temperatures=[0, 1], progress=None)
    with pytest.raises(ConfigError, match="must be >= 0"):
        engine.play(tiny_policy, seeds, temperatures=[0, 1, 0, 1, 0, -1], progress=None)


def test_opponent_temperature_plays_greedy_games_against_the_named_opponent(tiny_policy, tmp_path):
    dm = PreferenceDataModule(
        ENV,
        opponents=["self", "random"],
        opponent_temperature={"random": 0},
        temperature=2.0,
        num_episodes=6,
        num_envs=6,
        margin=0.5,
        run_dir=str(tmp_path),
    )
    played = dm.episodes(tiny_policy)
    against_random = [e for e in played if e.opponent == "random"]
    assert len(against_random) == 3 and {e.opponent for e in played} == {"self", "random"}
    engine = RolloutEngine(ENV, {"opponent": "random"}, num_envs=3)
    greedy = engine.play(tiny_policy, [e.seed for e in against_random], greedy=True, progress=None).episodes
    assert [[t.action for t in e.turns] for e in against_random] == [[t.action for t in e.turns] for e in greedy]
    key = r"--data.opponent_temperature key \(an opponent the games meet\) must be one of "
    with pytest.raises(ConfigError, match=key + r"self, random; got 'randon'; did you mean 'random'\?"):
        PreferenceDataModule(ENV, opponents=["self", "random"], opponent_temperature={"randon": 0})
    # Without --data.opponents the games meet the env's one opponent (random for tic-tac-toe).
    with pytest.raises(ConfigError, match=key + r"random; got 'mcts'"):
        PreferenceDataModule(ENV, opponent_temperature={"mcts": 0})
    for bad in (-1, float("nan"), True):
        with pytest.raises(ConfigError, match=r"--data.opponent_temperature.random must be a finite number >= 0"):
            PreferenceDataModule(ENV, opponents=["self", "random"], opponent_temperature={"random": bad})


def test_self_play_rollout_to_pairs(tiny_policy, tmp_path):
    dm = PreferenceDataModule(
        ENV,
        {"opponent": "self"},
        num_episodes=12,
        num_envs=6,
        strategy="oracle",
        margin=0.5,
        run_dir=str(tmp_path),
    )
    dm.build(tiny_policy)
    folder = tmp_path / "iter_000"
    episodes = read_jsonl(folder / "episodes.jsonl", Episode)
    train = read_jsonl(folder / "pairs_train.jsonl", PreferencePair)
    evals = read_jsonl(folder / "pairs_eval.jsonl", PreferencePair)
    assert len(episodes) == 12 and {t.seat for e in episodes for t in e.turns} == {0, 1}
    assert train == dm.train_pairs and evals == dm.eval_pairs and train
    assert all(p.chosen_score >= p.rejected_score + 0.5 for p in train + evals)
    assert not {p.state_key for p in train} & {p.state_key for p in evals}
    row = json.loads((folder / "pairs_train.jsonl").read_text().splitlines()[0])
    assert {"prompt", "chosen", "rejected"} <= set(row)  # the shape TRL reads
    batch = next(iter(dm.train_dataloader()))
    assert isinstance(batch[0], PreferencePair)


def test_a_killed_rollout_is_topped_up_not_replayed(tiny_policy, tmp_path):
    dm = PreferenceDataModule(ENV, {"opponent": "random"}, num_episodes=6, num_envs=3, run_dir=str(tmp_path))
    path = tmp_path / "iter_000" / "episodes.jsonl"
    engine = RolloutEngine(ENV, {"opponent": "random"}, num_envs=2)
    engine.play(tiny_policy, dm._seeds()[:4], out_path=path, progress=None)  # "killed" after 4 games
    with path.open("a") as fh:
        fh.write('{"episode_id": "torn')  # and mid-line
    kept = path.read_text().splitlines()[:4]
    eps = dm.episodes(tiny_policy)
    assert len(eps) == 6 and path.read_text().splitlines()[:4] == kept
    assert [e.seed for e in eps] == dm._seeds()


def test_given_episodes_file_with_a_bad_line_is_reported(tmp_path):
    path = tmp_path / "eps.jsonl"
    path.write_text('{"episode_id": "x"}\n')
    dm = PreferenceDataModule(ENV, episodes_path=str(path), run_dir=str(tmp_path / "run"))
    with pytest.raises(DataFileError, match=r"eps.jsonl:1: field 'game': missing"):
        dm.build()


@pytest.mark.parametrize(
    "kwargs, option",
    [
        ({"strategy": "best"}, "--data.strategy"),
        ({"oracle": "judge"}, "--data.oracle"),
        ({"mode": "beam"}, "--data.mode"),
        ({"window": 0}, "--data.window"),
        ({"temperature": 0.0}, "--data.temperature"),
        ({"episodes_path": "nowhere.jsonl"}, "--data.episodes_path"),
        ({"margin": 0.0}, "--data.margin"),
        ({"eval_ratio": 1.0}, "--data.eval_ratio"),
        ({"num_envs": 0}, "--data.num_envs"),
        ({"opponents": ["self", "grandmaster"]}, "--data.opponents"),
    ],
)
def test_bad_datamodule_options_are_named(kwargs, option):
    with pytest.raises(ConfigError, match=option):
        PreferenceDataModule(ENV, **kwargs)


def test_opponent_mix_deals_games_round_robin(tiny_policy, tmp_path):
    dm = PreferenceDataModule(
        ENV, opponents=["self", "random"], num_episodes=6, num_envs=3, run_dir=str(tmp_path)
    )
    eps = dm.episodes(tiny_policy)
    assert [e.opponent for e in eps] == ["self", "random"] * 3
    assert [e.learner_seat == -1 for e in eps] == [True, False] * 3
    assert dm.rollout_metrics["episodes"] == 6


def test_a_reused_run_folder_does_not_feed_another_games_episodes(tiny_policy, tmp_path):
    first = PreferenceDataModule(
        ENV, {"opponent": "random"}, num_episodes=4, num_envs=4, run_dir=str(tmp_path)
    )
    first.episodes(tiny_policy)
    other = PreferenceDataModule(
        "lightspiel/ConnectFour-v0", {"opponent": "random"}, num_episodes=4, num_envs=4, run_dir=str(tmp_path)
    )
    eps = other.episodes(tiny_policy)
    assert len(eps) == 4 and {e.env_id for e in eps} == {"lightspiel/ConnectFour-v0"}


def test_env_options_given_as_command_line_strings_are_read_by_the_option_type():
    """``--data.init_args.env_kwargs.illegal_penalty 1.5`` reaches the env as a string; an option the
    env does not take as a string is read as a JSON scalar, string options stay strings (a game named
    "2048" is a game), bad values still fail with the option named."""
    from datamodules.rollout import _typed_options, make_env

    env = make_env(
        "lightspiel/TicTacToe-v0",
        {"illegal_penalty": "1e-3", "max_turns": "null", "mcts_simulations": "7", "opponent": "random"},
    ).unwrapped
    assert (env.illegal_penalty, env.max_turns, env.mcts_simulations) == (0.001, None, 7)
    assert _typed_options("lightspiel/TicTacToe-v0", {"game": "2048", "render_mode": "null"}) == {
        "game": "2048",
        "render_mode": "null",
    }
    with pytest.raises(ConfigError, match="illegal_penalty must be a finite number; got 'lots'"):
        make_env("lightspiel/TicTacToe-v0", {"illegal_penalty": "lots"})


def test_group_batches_are_sharded_by_the_distributed_sampler_lightning_injects():
    """Under DDP Lightning re-creates the batch sampler with a DistributedSampler: each rank takes
    every world-th batch of one shared order, padded by wrapping so all ranks take as many steps,
    and a group (rows with one key) is never split."""
    import torch
    from torch.utils.data import DistributedSampler

    from datamodules.batching import GroupBatchSampler

    keys = ["a", "a", "b", "c", "c", "c", "d", "e", "f", "f", "g"]  # 7 groups -> batches of >= 2 rows
    one = GroupBatchSampler(keys, 2, shuffle=True, passes=2, generator=torch.Generator().manual_seed(3))
    whole = list(one)
    n = len(whole) // 2
    for world in (2, 3):
        shards = []
        for rank in range(world):
            fake = DistributedSampler(range(len(keys)), num_replicas=world, rank=rank, shuffle=False)
            sampler = GroupBatchSampler(
                keys, 2, shuffle=True, passes=2, generator=torch.Generator().manual_seed(3), sampler=fake
            )
            got = list(sampler)
            assert len(got) == len(sampler) == 2 * -(-n // world)  # every rank as many steps
            shards.append(got)
        first_pass = [b for shard in shards for b in shard[: len(shard) // 2]]
        assert sorted(map(tuple, whole[:n])) == sorted(set(map(tuple, first_pass)))  # none missing
        assert {tuple(b) for shard in shards for b in shard} <= {tuple(b) for b in whole[:n]}
    owners: dict[str, set] = {}
    for batch in whole[:n]:
        for i in batch:
            owners.setdefault(keys[i], set()).add(tuple(batch))
    assert all(len(batches) == 1 for batches in owners.values())  # no group in two batches


def test_replayed_starts_open_the_iteration_from_the_failed_state_against_the_same_opponent(tiny_policy, tmp_path):
    """FailureReplay's starts: the first games of the next iteration resume the failed games at the
    failed decision, the learner in the seat that failed and against the opponent it failed against;
    their pairs come from that state on, and a rerun of the iteration reads them back unplayed."""
    from callbacks.failure_replay import ReplayBuffer

    dm = PreferenceDataModule(
        ENV, opponents=["self", "random", "mcts"], num_episodes=9, num_envs=9, margin=0.5, run_dir=str(tmp_path)
    )
    first = dm.episodes(tiny_policy)
    buffer = ReplayBuffer()
    assert buffer.add_from(first) >= 2  # a random tiny model loses some games to random and MCTS
    starts = buffer.entries[:2]
    assert all(s["opponent"] in ("random", "mcts") for s in starts)
    dm.set_iteration(1)
    dm.set_starts(starts)
    second = dm.episodes(tiny_policy)
    assert len(second) == 9
    for start, replay in zip(starts, second[:2]):
        assert replay.start_history == start["history"] and replay.seed == start["seed"]
        assert replay.opponent == start["opponent"] and replay.learner_seat == start["seat"]
        assert replay.turns[0].history == start["history"] and replay.turns[0].seat == start["seat"]
    fresh = second[2:]
    assert not any(e.start_history for e in fresh)
    assert [e.opponent for e in fresh] == ["mcts", "self", "random", "mcts", "self", "random", "mcts"]
    # The replayed state gives pairs: its moves are ranked by the oracle like any other.
    pairs = oracle_pairs(second[:2], margin=0.5, illegal_negatives=1)
    assert {p.prompt for p in pairs} >= {second[0].turns[0].prompt, second[1].turns[0].prompt}
    # Rerun (a resumed iteration): the same games come back from the file, none played again.
    again = dm.episodes(None)
    assert [e.episode_id for e in again] == [e.episode_id for e in second]
    # A replay start from another env is not this datamodule's: every game starts fresh.
    dm.set_iteration(2)
    dm.set_starts([{**starts[0], "env": "lightspiel/ConnectFour-v0"}])
    assert not any(e.start_history for e in dm.episodes(tiny_policy))
    # Starts given without their opponent (ReplayData does not require one): a seat that failed keeps
    # its seat against an opponent, even in a self-play slot; a self-play failure replays as one.
    dm.set_iteration(3)
    old = [{k: v for k, v in s.items() if k != "opponent"} for s in starts]
    dm.set_starts([old[0], {**old[1], "learner_seat": None}])
    seated, selfplay = dm.episodes(tiny_policy)[:2]
    assert seated.opponent == "random" and seated.learner_seat == starts[0]["seat"]  # slot 0 is self-play
    assert selfplay.opponent == "self" and selfplay.start_history == starts[1]["history"]

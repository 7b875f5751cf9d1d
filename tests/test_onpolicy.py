"""Seats and players in the rollout engine, on-policy rows, PPO and GRPO on a tiny model."""

import json
import math
import subprocess
import sys
from dataclasses import dataclass

import pytest
import torch
import yaml

from cli import cli_main
from datamodules import AgentPlayer, OnPolicyDataModule, PolicyPlayer, RolloutEngine
from datamodules.batching import GroupBatchSampler
from datamodules.onpolicy import episode_rows
from datamodules.players import seats_for
from datamodules.records import Episode, Turn, atomic_open
from modules.errors import ConfigError

ENV = "lightspiel/TicTacToe-v0"


@dataclass
class _Answer:
    text: str
    index: int | None = None
    logp: float | None = None


class Scripted:
    """A policy that answers every prompt with the same text, and remembers what it was shown."""

    def __init__(self, text: str) -> None:
        self.text, self.seen = text, []

    def act(self, observations, mode="generate", greedy=False, temperature=None):
        self.seen += observations
        return [_Answer(self.text) for _ in observations]


def test_records_and_errors_import_without_torch_or_lightning():
    code = (
        "import sys; import datamodules.records, datamodules.protocols, modules.errors, modules.modes; "
        "print(sorted(m for m in ('torch', 'lightning') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_atomic_open_keeps_the_old_file_when_writing_fails(tmp_path):
    path = tmp_path / "report.json"
    path.write_text("old")
    with pytest.raises(RuntimeError), atomic_open(path) as fh:
        fh.write("half of the new")
        raise RuntimeError("killed")
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["report.json"]


def test_unparsable_answers_are_counted_and_resolved_by_the_env_rule():
    """Every answer of this player is unparsable: each counts as unparsed and illegal, the env's
    'random' rule plays for it, and the games still finish."""
    engine = RolloutEngine(ENV, {"opponent": "random", "illegal_rule": "random"}, num_envs=3)
    result = engine.play(Scripted("I would rather not say"), seeds=[1, 2, 3], mode="generate", progress=None)
    turns = [t for e in result.episodes for t in e.turns]
    assert len(result.episodes) == 3 and len(turns) >= 9  # a learner moves at least 3 times a game
    assert all(t.outcome == "unparsed" and t.rule == "random" and t.action is not None for t in turns)
    m = result.metrics
    assert (m["parse_rate"], m["illegal_rate"], m["rule_random_rate"]) == (0.0, 1.0, 1.0)
    legal = RolloutEngine(ENV, {"opponent": "random"}, num_envs=3).play(
        Scripted("5"), seeds=[1, 2, 3], mode="generate", progress=None
    )
    # "5" is legal on the learner's first move only when the opponent has not taken the centre.
    firsts = [e.turns[0] for e in legal.episodes]
    assert all(t.parsed for t in firsts) and any(t.legal and t.action == 4 for t in firsts)


def test_seated_players_each_see_only_their_seats_and_agents_are_not_training_data(tiny_policy):
    learner = PolicyPlayer(tiny_policy)
    engine = RolloutEngine(ENV, num_envs=4)
    result = engine.play(
        None,
        seeds=list(range(6)),
        mode="score",
        greedy=True,
        seats=lambda g: seats_for([learner, AgentPlayer("minimax")], g),
        progress=None,
    )
    assert [e.learner_seat for e in result.episodes] == [0, 1] * 3
    assert [e.players for e in result.episodes] == [["learner", "minimax"], ["minimax", "learner"]] * 3
    for e in result.episodes:
        assert e.opponent == "minimax"
        assert {t.seat for t in e.turns if t.learner} == {e.learner_seat}
        assert {t.player for t in e.turns if not t.learner} == {"minimax"}
        assert e.returns[e.learner_seat] <= 0  # nobody beats exact play
    # Two language-model players: each act call carries only its own seat's observations.
    a, b = Scripted("1"), Scripted("9")
    engine.play(
        None,
        seeds=[0, 1],
        seats=lambda g: [PolicyPlayer(a, "a"), PolicyPlayer(b, "b", learner=False)],
        mode="generate",
        progress=None,
    )
    assert a.seen and b.seen
    assert {o["seat"] for o in a.seen} == {0} and {o["seat"] for o in b.seen} == {1}


def test_rows_carry_each_seats_return_minus_penalties():
    """Seat 0 answers illegally once (penalty 1) and wins (+1); seat 1 loses (-1)."""

    def turn(seat, reward, legal=True):
        return Turn(
            seat, "p", ["1"], "x", 0, "1", legal, legal, "ok" if legal else "illegal", None, [], reward
        )

    ep = Episode(
        "e", "tic_tac_toe", ENV, 0, "self", -1,
        [turn(0, -1.0, legal=False), turn(1, 0.0), turn(0, 1.0), turn(1, 0.0)],
        returns=[1.0, -1.0], penalties=[1.0, 0.0],
    )  # fmt: skip
    rows = episode_rows(ep, "g")
    by_seat = {s: [r for r in rows if r["seat"] == s] for s in (0, 1)}
    # Seat 0: -1 (penalty), then +1 (its winning move): 0 = 1 - 1. Seat 1: 0 then the loss on its last turn.
    assert [r["reward"] for r in by_seat[0]] == [-1.0, 1.0]
    assert [r["reward"] for r in by_seat[1]] == [0.0, -1.0]
    assert {r["outcome"] for r in by_seat[0]} == {0.0} and {r["outcome"] for r in by_seat[1]} == {-1.0}
    assert [r["last"] for r in by_seat[1]] == [False, True]


def test_the_oracle_judges_each_move_by_its_regret(tiny_policy):
    """X (seat 0) holds cells 0 and 1, O holds 3 and 4, X to move. Cell 2 wins (value +1, the best);
    cell 8 lets O complete 3-4-5 (value -1): regret (1 - (-1)) / utility range 2 = 1, so with weight
    0.5 its move reward is -0.5. An illegal answer (the env's random move) is not judged."""
    from datamodules.onpolicy import judge_moves
    from datamodules.pairs import _OracleValues
    from modules.grpo import GRPO

    def turn(seat, action, legal=True, history=(0, 3, 1, 4)):
        outcome = "ok" if legal else "illegal"
        return Turn(seat, "p", ["3"], str(action + 1), action, str(action + 1), True, legal, outcome, None,
                    list(history), 0.0 if legal else -1.0)  # fmt: skip

    values_of = _OracleValues("minimax", 10, None)
    won = Episode(
        "w", "tic_tac_toe", ENV, 0, "random", 0, [turn(0, 2)], returns=[1.0, -1.0], penalties=[0.0, 0.0]
    )
    blunder = Episode("b", "tic_tac_toe", ENV, 0, "random", 0, [turn(0, 8), turn(0, 2, legal=False)],
                      returns=[-1.0, 1.0], penalties=[1.0, 0.0])  # fmt: skip
    judged, quality = judge_moves([won, blunder], 0.5, values_of)
    assert judged == [[0.0], [-0.5, 0.0]]
    assert quality == {"optimal_move_share": 0.5, "move_regret": 0.5}
    rows = episode_rows(blunder, "g", judged[1])
    # PPO's per-turn reward: the game's (the penalty, the rest of the return at the end) plus the oracle's.
    assert [r["reward"] for r in rows] == [-0.5, -2.0]  # the loss, -1, and the penalty, -1, at the end
    assert [r["move_reward"] for r in rows] == [-0.5, 0.0] and {r["outcome"] for r in rows} == {-2.0}
    # GRPO: the oracle's judgement lands on the turn itself, beside its trajectory's advantage (the
    # illegal turn gets its penalty, -1, instead): the two turns' advantages differ by -0.5 - (-1).
    for r in rows:
        r["old_logps"], r["completion_ids"] = [0.0], [1]
    rows += [
        {**r, "episode_id": "w", "outcome": 1.0, "move_reward": 0.0}
        for r in episode_rows(won, "g", judged[0])
    ]
    rows[-1]["old_logps"], rows[-1]["completion_ids"] = [0.0], [1]
    GRPO(tiny_policy, advantage="group").assign_advantages(rows)
    assert rows[0]["advantage"] - rows[1]["advantage"] == pytest.approx(0.5)
    assert rows[2]["advantage"] > rows[0]["advantage"]


def test_a_group_never_straddles_two_batches():
    keys = ["a"] * 3 + ["b"] * 5 + ["c"] * 2 + ["d"]
    sampler = GroupBatchSampler(keys, batch_size=4, passes=2)
    batches = list(sampler)
    # Per pass: a (3 rows) is short of 4, so b joins it (8 rows); c and d make the last batch (3 rows).
    assert len(batches) == len(sampler) == 4
    assert sorted(sorted({keys[i] for i in b}) for b in batches) == [["a", "b"]] * 2 + [["c", "d"]] * 2
    for batch in batches:
        groups = {keys[i] for i in batch}
        for g in groups:
            assert {i for i, k in enumerate(keys) if k == g} <= set(batch)
    assert sorted(i for b in batches for i in b) == sorted(list(range(len(keys))) * 2)


@pytest.mark.parametrize(
    "kwargs, option",
    [
        ({"grouping": "gme"}, "did you mean 'game'"),
        ({"mode": "generat"}, "did you mean 'generate'"),
        ({"ppo_epochs": 0}, "--data.ppo_epochs"),
        ({"grouping": "start", "group_size": 1}, "--data.group_size must be >= 2 with grouping: start"),
        ({"grouping": "prompt", "group_size": 1}, "--data.group_size must be >= 2 with grouping: prompt"),
        ({"grouping": "promt"}, "did you mean 'prompt'"),
        ({"env": "lightspiel/TicTacToo-v0"}, "did you mean 'lightspiel/TicTacToe-v0'"),
        ({"oracle_reward": -1.0}, "--data.oracle_reward must be a finite number >= 0"),
        ({"oracle_reward": 1.0, "oracle": "minmax"}, "did you mean 'minimax'"),
        ({"oracle_reward": 1.0, "env": "lightspiel/Math-v0"}, "--data.oracle_reward needs an OpenSpiel game"),
        ({"oracle_reward": float("nan")}, "--data.oracle_reward must be a finite number >= 0"),
        # MCTS on hidden cards would punish every bluff; a shared reward has no opponent to search against.
        (
            {"oracle_reward": 1.0, "env": "lightspiel/KuhnPoker-v0"},
            "needs a zero-sum game of perfect information",
        ),
        (
            {"oracle_reward": 1.0, "env": "lightspiel/LewisSignaling-v0", "opponents": ["self"]},
            "needs a zero-sum game of perfect information",
        ),
    ],
)
def test_bad_onpolicy_options_are_named(kwargs, option):
    with pytest.raises(ConfigError, match=option):
        OnPolicyDataModule(**{"env": ENV, **kwargs})


def _fit_config(tmp_path, tiny_config, name, **data):
    cfg, run = tiny_config(tmp_path, name)
    config = yaml.safe_load(cfg.read_text())
    config["data"]["init_args"].update(data)
    cfg.write_text(yaml.safe_dump(config))
    return cfg, run


def test_ppo_fit_trains_adapter_and_value_head_only(tmp_path, tiny_config, tiny_model_dir):
    cfg, run = _fit_config(tmp_path, tiny_config, "openspiel_ppo_curriculum.yaml", num_episodes=4)
    cli_main(["fit", "--config", str(cfg), "--trainer.max_epochs=1", "--trainer.log_every_n_steps=1"])
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)
    state = ckpt["state_dict"]
    head = {k for k in state if "value_head" in k}
    assert head == {"policy.value_head.weight", "policy.value_head.bias"}
    assert all(".lora_" in k for k in set(state) - head)  # no frozen base weight in the checkpoint
    from modules.policy import Policy

    torch.manual_seed(0)
    fresh = Policy(model=tiny_model_dir, lora_r=4, lora_alpha=8)
    fresh.add_value_head()
    before = dict(fresh.named_parameters())
    changed = [k for k in state if not torch.equal(state[k], before[k.removeprefix("policy.")].detach())]
    assert any("value_head" in k for k in changed) and any("lora_B" in k for k in changed)
    episodes = [json.loads(x) for x in (run / "iter_000" / "episodes.jsonl").read_text().splitlines()]
    learner_turns = [t for e in episodes for t in e["turns"] if t["learner"]]
    assert len(episodes) == 4 and learner_turns
    assert all(
        t["completion_ids"] and len(t["token_logps"]) == len(t["completion_ids"]) for t in learner_turns
    )
    assert all(t["value"] is not None for t in learner_turns)
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))


def test_grpo_with_a_shared_reward_grouped_by_game_warns_and_learns_nothing(tmp_path, tiny_config):
    """Seed 001 as written: a cooperative game, both seats in one group with the same reward."""
    cfg, run = _fit_config(
        tmp_path,
        tiny_config,
        "openspiel_ppo_curriculum.yaml",
        env="lightspiel/LewisSignaling-v0",
        env_kwargs={"illegal_rule": "random", "illegal_penalty": 0.0},
        opponents=["self"],
        grouping="game",
        oracle_reward=0.0,  # the PPO config's oracle judges zero-sum games only
        num_episodes=4,
    )
    config = yaml.safe_load(cfg.read_text())
    config["model"] = {
        "class_path": "modules.GRPO",
        "init_args": {"policy": config["model"]["init_args"]["policy"], "advantage": "group"},
    }
    config["trainer"]["callbacks"] = []
    cfg.write_text(yaml.safe_dump(config))
    with pytest.warns(UserWarning, match="all-equal rewards"):
        cli_main(["fit", "--config", str(cfg), "--trainer.max_epochs=1"])
    assert (run / "checkpoints" / "last.ckpt").exists()


def test_ppo_with_curriculum_and_replay_resumes_with_their_state(tmp_path, tiny_config):
    cfg, run = _fit_config(tmp_path, tiny_config, "openspiel_ppo_curriculum.yaml", num_episodes=4)
    cli_main(["fit", "--config", str(cfg), "--trainer.max_epochs=1"])
    first = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)
    curriculum = next(v for k, v in first["callbacks"].items() if k.startswith("Curriculum"))
    replay = next(v for k, v in first["callbacks"].items() if k.startswith("FailureReplay"))
    assert curriculum["stage_index"] == 0 and len(curriculum["window"]) == 4  # the epoch's four games
    assert replay["entries"]  # a random tiny model loses or answers illegally somewhere
    assert "lightspiel_kl_controller" in first
    cli_main(["fit", "--config", str(cfg), "--trainer.max_epochs=2", "--ckpt_path=last"])
    second = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)
    resumed = next(v for k, v in second["callbacks"].items() if k.startswith("Curriculum"))
    # The saved window went on, it did not restart; games started from a replayed failure do not count.
    fresh = [
        e for e in map(json.loads, (run / "iter_001" / "episodes.jsonl").open()) if not e["start_history"]
    ]
    assert len(fresh) < 4 and resumed["window"][:4] == curriculum["window"]
    assert sorted(resumed["window"][4:]) == sorted(float(e["returns"][e["learner_seat"]] > 0) for e in fresh)
    assert (run / "iter_001" / "episodes.jsonl").exists() and second["epoch"] == 1


def test_grpo_role_baselines_survive_a_resume(tmp_path, tiny_config):
    cfg, run = _fit_config(tmp_path, tiny_config, "tictactoe_grpo_rae.yaml", num_episodes=4)
    cli_main(["fit", "--config", str(cfg), "--trainer.max_epochs=1"])
    first = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)["lightspiel_role_baselines"]
    assert set(first["baselines"]) == {"tic_tac_toe|0", "tic_tac_toe|1"} and first["counts"] == {
        "tic_tac_toe|0": 1,
        "tic_tac_toe|1": 1,
    }
    cli_main(["fit", "--config", str(cfg), "--trainer.max_epochs=2", "--ckpt_path=last"])
    second = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)["lightspiel_role_baselines"]
    assert second["counts"] == {"tic_tac_toe|0": 2, "tic_tac_toe|1": 2}  # updated once more, not reset


def test_cooperative_grpo_config_fits_and_compares_wins(tmp_path, tiny_config):
    """The shipped cooperative config, shrunk: games dealt round-robin to the heuristic partner (one
    learner seat) and to self-play (both seats trained), the answers of every state played on, and
    the tournament compares the win (shared reward earned) in both modes, since nobody can lose."""
    cfg, run = _fit_config(tmp_path, tiny_config, "cooperative_grpo_selfplay.yaml", num_episodes=3)
    cli_main(["fit", "--config", str(cfg), "--trainer.max_epochs=1", "--trainer.log_every_n_steps=1"])
    assert (run / "checkpoints" / "last.ckpt").exists()
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))
    episodes = [json.loads(x) for x in (run / "iter_000" / "episodes.jsonl").read_text().splitlines()]
    assert sorted(e["opponent"] for e in episodes) == ["heuristic", "heuristic", "self"]
    for e in episodes:
        seats = {t["seat"] for t in e["turns"] if t["learner"]}
        assert seats == ({0, 1} if e["opponent"] == "self" else {e["learner_seat"]})
    report = json.loads((run / "reports" / "tournament_comparison.json").read_text())
    for mode in ("score", "generate"):
        row = report["comparison"][mode]["self"]
        assert report["rate"] == "win" and row["rate"] == "win" and "win_before" in row
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run / "tensorboard")).Reload()
    assert "rollout/playout_mean_return" in events.Tags()["scalars"]  # the answers were played on


def test_legal_nll_term_makes_the_rollouts_legal_answers_likelier(tiny_policy):
    """With zero advantages the policy loss is flat; the self-imitation term alone raises the
    likelihood of the answers the env read as legal, not of the illegal ones."""
    import torch

    from modules.grpo import GRPO

    policy = tiny_policy
    prompt = "Tic-tac-toe. You are X. Legal moves: 1 2 3. Reply with one cell number."
    texts = {"5": False, "3": True}  # answer -> legal
    rows = [
        {
            "prompt": prompt,
            "completion_ids": policy.completion_ids(text),
            "old_logps": None,
            "advantage": 0.0,
            "legal": legal,
        }
        for text, legal in texts.items()
    ]

    def logps() -> dict[str, float]:
        with torch.no_grad():
            lp, mask, _ = policy.token_logps(
                [policy.prompt_ids(prompt)] * 2, [r["completion_ids"] for r in rows]
            )
        return {t: float((lp[i] * mask[i]).sum()) for i, t in enumerate(texts)}

    with torch.no_grad():
        lp, mask, _ = policy.token_logps([policy.prompt_ids(prompt)] * 2, [r["completion_ids"] for r in rows])
    for i, r in enumerate(rows):
        r["old_logps"] = lp[i][mask[i]].tolist()
    before = logps()
    module = GRPO(policy, beta=0.0, lr=1e-1, legal_nll_coef=1.0)
    module.log = module.log_dict = lambda *a, **k: None  # no Trainer attached
    opt = module.configure_optimizers()
    for _ in range(5):
        opt.zero_grad()
        module.training_step(rows, 0).backward()
        opt.step()
    after = logps()
    assert after["3"] > before["3"] + 0.05, (before, after)
    assert after["3"] - before["3"] > after["5"] - before["5"], (before, after)


def test_a_bf16_policy_takes_old_logps_from_the_training_pass(tiny_model_dir):
    """In bf16 the sampler's log-probs come from another computation than training's; the update
    takes its ratio denominator from the training pass instead (the same layout gives the same
    numbers; another batch layout differs by bf16 rounding only)."""
    from modules.grpo import GRPO
    from modules.policy import Policy

    torch.manual_seed(0)
    policy = Policy(model=tiny_model_dir, dtype="bfloat16", lora_r=4, lora_alpha=8)
    with torch.no_grad():
        for name, w in policy.model.named_parameters():
            if "lora_B" in name:
                w.normal_(0, 0.5)
    prompt = "Tic-tac-toe. You are X. Legal moves: 1 2 3. Reply with one cell number."
    obs = [{"prompt": prompt, "legal_actions": ["1", "2", "3"]}] * 3
    actions = policy.act(obs, mode="generate", temperature=1.0)
    rows = [
        {"prompt": prompt, "completion_ids": a.token_ids, "old_logps": list(a.token_logps), "advantage": 0.0}
        for a in actions
    ]
    sampled = [list(r["old_logps"]) for r in rows]
    GRPO(policy, beta=0.0).fill_old_logps(rows)
    with policy.evaluating():  # the update's own pass: autograd records (and picks its attention kernel)
        lp, mask, _ = policy.token_logps([policy.prompt_ids(prompt)] * 3, [r["completion_ids"] for r in rows])
    lp = lp.detach()
    for i, r in enumerate(rows):
        assert r["old_logps"] == lp[i][mask[i]].tolist()
    assert any(s != r["old_logps"] for s, r in zip(sampled, rows))  # the sampler's differed
    # PPO: the value estimates come from that pass too
    from modules.ppo import PPO

    ppo = PPO(policy)
    for r in rows:
        r["value"] = 123.0  # what acting recorded (a sentinel here)
    ppo.fill_old_logps(rows)
    with policy.evaluating():
        _, _, values = policy.token_logps(
            [policy.prompt_ids(prompt)] * 3, [r["completion_ids"] for r in rows], values=True
        )
    assert [r["value"] for r in rows] == values.detach().tolist()


def test_prompt_grouping_judges_every_sampled_answer_at_a_state_alone(tiny_policy):
    """``grouping: prompt``: at X's turn (X holds cells 0 and 1, O holds 3 and 4) the policy samples
    more answers to the same observation; each is judged alone. "3" (cell 2) wins: 0. "6" (cell 5)
    blocks O and the game is drawn: regret (1 - 0) / 2, times 0.5. "7" / "9" let O complete 3-4-5:
    regret 1, times 0.5. "1" names a taken cell: the env's penalty, -1. The rows share one group,
    the played answer first, and GRPO ranks them by their own judgement."""
    from modules.grpo import GRPO

    history = [0, 3, 1, 4]
    played = Turn(0, "Your move.", ["1", "3", "6", "7", "9"], "3", 2, "3", True, True, "ok", None,
                  history, 0.0, completion_ids=tiny_policy.completion_ids("3"))  # fmt: skip
    episode = Episode(
        "e", "tic_tac_toe", ENV, 0, "random", 0, [played], returns=[1.0, -1.0], penalties=[0.0, 0.0]
    )
    dm = OnPolicyDataModule(
        env=ENV, grouping="prompt", group_size=32, mode="score", temperature=100.0,
        oracle_reward=0.5, oracle="minimax", opponents=["random"],
    )  # fmt: skip
    dm._epoch_oracle()
    rows = dm._state_groups(tiny_policy, [episode], {})
    expected = {"1": -1.0, "3": 0.0, "6": -0.25, "7": -0.5, "9": -0.5}
    assert len(rows) == 32 and {r["group"] for r in rows} == {"e/0"}
    assert rows[0]["completion"] == "3" and rows[0]["episode_id"] == "e/0/0"
    assert {r["completion"] for r in rows} >= {"1", "3"} and len({r["completion"] for r in rows}) >= 4
    for r in rows:
        assert r["outcome"] == pytest.approx(expected[r["completion"]]), r["completion"]
        assert r["legal"] == (r["completion"] != "1")
    assert dm.rollout_metrics["group_move_regret"] > 0
    GRPO(tiny_policy, advantage="group").assign_advantages(rows)
    by_text: dict[str, set] = {}
    for r in rows:
        by_text.setdefault(r["completion"], set()).add(round(r["advantage"], 6))
    assert all(len(v) == 1 for v in by_text.values())  # the same answer, the same advantage
    adv = {t: v.pop() for t, v in by_text.items()}
    assert adv["3"] == max(adv.values()) and adv["1"] == min(adv.values())
    assert sum(r["advantage"] for r in rows) == pytest.approx(0.0, abs=1e-5)  # no per-turn term on top


def test_playout_judge_values_each_answer_by_the_game_played_on_from_it(tiny_policy):
    """``sibling_judge: playout`` with ``distinct_siblings`` on Lewis signaling (secret 2, the
    sender's turn, the heuristic partner as receiver: it guesses the number a signal names in its
    convention, red -> 1, green -> 2, blue -> 3). The group holds every signal once, the played one
    first; each is played on by the partner, so "green" scores 1 and the others 0, and GRPO ranks
    green first. No oracle is involved: the game itself judges."""
    from modules.grpo import GRPO

    env = "lightspiel/LewisSignaling-v0"
    prompt = "Secret: 2. Send a signal."
    played = Turn(0, prompt, ["red", "green", "blue"], "blue", 2, "blue", True, True, "ok", None, [1], 0.0)
    episode = Episode("e", "lewis_signaling", env, 0, "heuristic", 0, [played], returns=[0.0, 0.0], penalties=[0.0, 0.0])
    dm = OnPolicyDataModule(
        env=env, opponents=["heuristic"], grouping="prompt", group_size=8, mode="score",
        distinct_siblings=True, sibling_judge="playout",
    )  # fmt: skip
    rows = dm._state_groups(tiny_policy, [episode], {})
    assert [r["completion"] for r in rows][0] == "blue"
    assert sorted(r["completion"] for r in rows) == ["blue", "green", "red"]  # each legal move once
    assert {r["completion"]: r["outcome"] for r in rows} == {"red": 0.0, "green": 1.0, "blue": 0.0}
    GRPO(tiny_policy, advantage="group").assign_advantages(rows)
    best = max(rows, key=lambda r: r["advantage"])
    assert best["completion"] == "green" and best["advantage"] > 0


def test_playout_judge_in_self_play_ends_at_the_answer_when_the_answer_ends_the_game(tiny_policy):
    """The receiver's guess ends a Lewis game: each guess is valued by the game's return itself
    (1 for the secret, 0 otherwise), with no playout; an unreadable guess gets the game's lowest
    return minus the penalty."""
    env = "lightspiel/LewisSignaling-v0"
    played = Turn(1, "Signal: red. Guess.", ["1", "2", "3"], "3", 2, "3", True, True, "ok", None, [2, 0], 1.0)
    episode = Episode("e", "lewis_signaling", env, 0, "self", -1, [played], returns=[1.0, 1.0], penalties=[0.0, 0.0])
    dm = OnPolicyDataModule(env=env, grouping="prompt", group_size=3, mode="score", distinct_siblings=True,
                            sibling_judge="playout")  # fmt: skip
    rows = dm._state_groups(tiny_policy, [episode], {})
    assert {r["completion"]: r["outcome"] for r in rows} == {"1": 0.0, "2": 0.0, "3": 1.0}
    unread = Turn(1, "Signal: red. Guess.", ["1", "2", "3"], "maybe", None, None, False, False, "unparsed",
                  "random", [2, 0], -1.0)  # fmt: skip
    episode.turns = [unread]
    dm = OnPolicyDataModule(env=env, grouping="prompt", group_size=2, mode="score", sibling_judge="playout")
    rows = dm._state_groups(tiny_policy, [episode], {})
    assert rows[0]["outcome"] == -1.0 and not rows[0]["legal"]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"sibling_judge": "playout"}, "--data.sibling_judge applies to grouping: prompt only"),
        ({"grouping": "prompt", "sibling_judge": "playouts"}, "did you mean 'playout'"),
        ({"grouping": "prompt", "distinct_siblings": True, "mode": "generate"}, "--data.distinct_siblings needs mode: score"),
        ({"env": "lightspiel/OpenSpiel-v0", "env_kwargs": {"game": "matrix_rps"}, "grouping": "prompt", "sibling_judge": "playout"}, "simultaneous"),
    ],
)
def test_sibling_options_are_checked_before_any_game(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        OnPolicyDataModule(**{"env": ENV, **kwargs})


def _lewis_sender_rows(policy, advantages: dict[str, float]) -> list[dict]:
    from datamodules.onpolicy import score_choice

    prompt, legal = "Secret: 2. Send a signal.", ["red", "green", "blue"]
    return [
        {"prompt": prompt, "completion": m, "completion_ids": policy.completion_ids(m), "old_logps": None,
         "advantage": advantages[m], "temperature": None, "legal": True, **score_choice("score", legal, m)}
        for m in legal
    ]  # fmt: skip


def test_candidate_objective_moves_score_modes_own_probabilities(tiny_policy):
    """``score_objective: candidates``: the old log-probabilities of a state's answers are score
    mode's sampling distribution over its legal moves (they add up to 1), and a few steps on a
    rewarded move make score mode pick it more often, at the other legal moves' expense."""
    from modules.grpo import GRPO

    grpo = GRPO(tiny_policy, beta=0.0, clip_eps=0.5, lr=5e-3, score_objective="candidates")
    rows = _lewis_sender_rows(tiny_policy, {"red": -1.0, "green": 2.0, "blue": -1.0})
    grpo.fill_old_logps(rows)
    assert sum(math.exp(r["old_logps"][0]) for r in rows) == pytest.approx(1.0, abs=1e-4)
    before = tiny_policy.action_probabilities([rows[0]["prompt"]], [rows[0]["candidates"]])[0]
    optimizer = torch.optim.Adam([p for p in tiny_policy.parameters() if p.requires_grad], lr=5e-3)
    grpo.log_dict = grpo.log = lambda *a, **k: None  # no trainer attached
    for _ in range(5):
        optimizer.zero_grad()
        grpo.training_step(rows, 0).backward()
        optimizer.step()
    after = tiny_policy.action_probabilities([rows[0]["prompt"]], [rows[0]["candidates"]])[0]
    assert after[1] > before[1] + 0.05
    assert after[0] < before[0] and after[2] < before[2]


def test_candidate_objective_with_legal_nll_makes_every_legal_move_a_likelier_answer(tiny_policy):
    """With ``legal_nll_coef`` and no advantage, the candidate objective still raises each legal
    move's likelihood as a whole answer (its text and the end-of-turn token): free text is kept to
    the moves while score mode chooses among them. Without the term, zero advantages change nothing."""
    from modules.grpo import GRPO

    rows = _lewis_sender_rows(tiny_policy, {"red": 0.0, "green": 0.0, "blue": 0.0})
    ids = ([tiny_policy.prompt_ids(rows[0]["prompt"])], [[r["completion_ids"] for r in rows]])
    with torch.no_grad(), tiny_policy.evaluating():
        before = tiny_policy.completion_logps(*ids)[0]
    after = {}
    for coef in (0.0, 1.0):
        grpo = GRPO(tiny_policy, beta=0.0, score_objective="candidates", legal_nll_coef=coef)
        grpo.fill_old_logps(rows)
        optimizer = torch.optim.Adam([p for p in tiny_policy.parameters() if p.requires_grad], lr=5e-3)
        grpo.log_dict = grpo.log = lambda *a, **k: None
        for _ in range(10):
            optimizer.zero_grad()
            grpo.training_step(rows, 0).backward()
            optimizer.step()
        with torch.no_grad(), tiny_policy.evaluating():
            after[coef] = tiny_policy.completion_logps(*ids)[0]
    assert torch.allclose(after[0.0], before)
    assert bool((after[1.0] > before + 0.2).all()), (before, after[1.0])


def test_candidate_objective_needs_score_rollouts_and_grpo(tiny_policy):
    from modules.grpo import GRPO

    grpo = GRPO(tiny_policy, score_objective="candidates")
    rows = _lewis_sender_rows(tiny_policy, {"red": 0.0, "green": 0.0, "blue": 0.0})
    for r in rows:
        del r["candidates"], r["candidate"]  # as generate-mode rows come
    with pytest.raises(ConfigError, match="needs rollouts in score mode \\(--data.mode score\\)"):
        grpo.fill_old_logps(rows)
    with pytest.raises(ConfigError, match="did you mean 'candidates'"):
        GRPO(tiny_policy, score_objective="candidate")


def test_grpo_fit_with_prompt_groups_trains_on_the_sampled_answers(tmp_path, tiny_config):
    """A few-step fit with ``grouping: prompt``: every learner turn brings ``group_size`` rows, the
    groups are kept whole, and the run writes its checkpoint, events and episodes."""
    cfg, run = _fit_config(
        tmp_path, tiny_config, "tictactoe_grpo_rae.yaml", grouping="prompt", group_size=3, num_episodes=2
    )
    config = yaml.safe_load(cfg.read_text())
    config["model"]["init_args"]["advantage"] = "group"
    config["trainer"]["callbacks"] = []
    cfg.write_text(yaml.safe_dump(config))
    cli_main(["fit", "--config", str(cfg), "--trainer.max_epochs=1"])
    assert (run / "checkpoints" / "last.ckpt").exists()
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))
    episodes = [json.loads(line) for line in (run / "iter_000" / "episodes.jsonl").read_text().splitlines()]
    learner_turns = sum(t["learner"] for e in episodes for t in e["turns"])
    assert len(episodes) == 2 and learner_turns > 0
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run / "tensorboard")).Reload()
    rows = events.Scalars("rollout/rows")
    assert rows[0].value == 3 * learner_turns

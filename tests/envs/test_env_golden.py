"""Golden transcripts: every prompt of a fixed-seed game, compared exactly (one file per game).

Regenerate (then read the files to check them!) with::

    LIGHTSPIEL_UPDATE_GOLDEN=1 pytest tests/envs/test_env_golden.py
"""

from __future__ import annotations

import os
from pathlib import Path

import gymnasium
import numpy as np
import pytest

from envs import OpenSpielTextEnv

GOLDEN_DIR = Path(__file__).resolve().parent / "golden"
GOLDEN = GOLDEN_DIR / "tic_tac_toe_vs_heuristic_seed7.txt"

# The learner's answers, in order: an unparseable answer (retried), an occupied cell (retried),
# then plain moves in the documented formats.
ANSWERS = ["Let me think about it.", "5", "1", "I play 3", "8", "Cell 4.", "6", "7", "9", "2"]


def _check_golden(path: Path, text: str) -> None:
    if os.environ.get("LIGHTSPIEL_UPDATE_GOLDEN"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert text == path.read_text()


def transcript() -> str:
    env = OpenSpielTextEnv(opponent="heuristic", learner_seat=1, illegal_rule="retry", max_retries=2)
    obs, info = env.reset(seed=7)
    lines = ["# tic_tac_toe, opponent=heuristic, learner_seat=1, illegal_rule=retry, reset(seed=7)"]
    for seat, _, text in info["opponent_actions"]:
        lines.append(f"[opponent seat {seat} plays {text}]")
    answers = iter(ANSWERS)
    terminated = truncated = False
    while not (terminated or truncated):
        lines += ["", f"--- prompt (seat {obs['seat']}) ---", obs["prompt"]]
        answer = next(answers)
        obs, reward, terminated, truncated, info = env.step(answer)
        lines.append(
            f">>> {answer!r} -> {info['outcome']}, rule={info['rule']}, action_text={info['action_text']}, "
            f"reward={reward:+.1f}"
        )
        for seat, _, text in info["opponent_actions"]:
            lines.append(f"[opponent seat {seat} plays {text}]")
    lines += ["", "--- final observation ---", obs["prompt"], f"returns={info['returns']}"]
    lines.append(f"penalties={info['penalties']}")
    return "\n".join(lines) + "\n"


def test_golden_prompt_transcript():
    _check_golden(GOLDEN, transcript())


#: label -> (env id, extra kwargs, seed). The learner answers in several accepted formats.
GAME_CASES: dict[str, tuple[str, dict, int]] = {
    "connect_four": ("lightspiel/ConnectFour-v0", {"opponent": "heuristic", "max_turns": 4}, 3),
    "kuhn_poker": ("lightspiel/KuhnPoker-v0", {"opponent": "heuristic"}, 1),
    "leduc_poker": ("lightspiel/LeducPoker-v0", {"opponent": "heuristic"}, 2),
    "repeated_poker": ("lightspiel/RepeatedPoker-v0", {"opponent": "heuristic"}, 0),
    "liars_dice": ("lightspiel/LiarsDice-v0", {"opponent": "heuristic"}, 4),
    "lewis_signaling": ("lightspiel/LewisSignaling-v0", {}, 5),
    "breakthrough": ("lightspiel/Breakthrough-v0", {"opponent": "heuristic", "max_turns": 3}, 6),
    "generic_goofspiel": ("lightspiel/OpenSpiel-v0", {"game": "goofspiel(num_cards=3)"}, 8),
}

TEMPLATES = ["{m}", "I play {m}.", "**{m}**", "  {m}\n"]


def golden_path(label: str) -> Path:
    return GOLDEN_DIR / f"{label}_seed{GAME_CASES[label][2]}.txt"


def game_transcript(label: str) -> str:
    env_id, kwargs, seed = GAME_CASES[label]
    env = gymnasium.make(
        env_id, illegal_rule="retry", max_retries=2, disable_env_checker=True, **kwargs
    ).unwrapped
    rng = np.random.default_rng(seed)
    obs, info = env.reset(seed=seed)
    options = ", ".join(f"{k}={v}" for k, v in sorted(kwargs.items()))
    lines = [
        f"# {env_id} ({env.game_name}){', ' + options if options else ''}, illegal_rule=retry, reset(seed={seed})"
    ]

    def extras(info: dict) -> None:
        if "bankrolls" in info:
            lines.append(f"[bankrolls={info['bankrolls']} round={info['round']}]")
        for seat, _, text in info["opponent_actions"]:
            lines.append(f"[opponent seat {seat} plays {text}]")

    extras(info)
    terminated = truncated = False
    step = 0
    while not (terminated or truncated):
        lines += ["", f"--- prompt (seat {obs['seat']}) ---", obs["prompt"]]
        if step == 0:
            answer = "Let me think about it."
        else:
            move = obs["legal_actions"][int(rng.integers(len(obs["legal_actions"])))]
            answer = TEMPLATES[step % len(TEMPLATES)].format(m=move)
        step += 1
        obs, reward, terminated, truncated, info = env.step(answer)
        lines.append(
            f">>> {answer!r} -> {info['outcome']}, rule={info['rule']}, action_text={info['action_text']}, "
            f"reward={reward:+g}"
        )
        extras(info)
    lines += ["", "--- final observation ---", obs["prompt"], f"returns={info['returns']}"]
    lines.append(f"penalties={info['penalties']}")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("label", list(GAME_CASES))
def test_game_golden_transcripts(label):
    _check_golden(golden_path(label), game_transcript(label))


def first_prompt(label: str) -> str:
    """The first prompt of a golden file (what docs/games.md shows)."""
    text = golden_path(label).read_text()
    body = text.split("--- prompt (seat ", 1)[1].split("\n", 1)[1]
    return body.split("\n>>> ", 1)[0]


def test_docs_show_the_golden_prompts():
    docs = (Path(__file__).resolve().parents[2] / "docs" / "games.md").read_text()
    for label in GAME_CASES:
        assert first_prompt(label) in docs, label
    ttt = GOLDEN.read_text().split("--- prompt (seat 1) ---\n", 1)[1].split("\n>>> ", 1)[0]
    assert ttt in docs

"""Golden transcripts: every prompt of a fixed-seed game, compared exactly (one file per game).

The games, seeds, options and file names come from the registry (each game's ``GameSpec.golden``).
Regenerate (then read the files to check them!) with::

    LIGHTSPIEL_UPDATE_GOLDEN=1 pytest tests/test_envs/test_env_golden.py
"""

from __future__ import annotations

import os
from pathlib import Path

import gymnasium
import numpy as np
import pytest

from envs.games.base import GameSpec
from envs.registry import GAMES

GOLDEN_DIR = Path(__file__).resolve().parent / "golden"

#: label -> spec, for every registered game with a golden transcript.
GOLDEN_SPECS: dict[str, GameSpec] = {spec.golden.name: spec for spec in GAMES if spec.golden is not None}

TEMPLATES = ["{m}", "I play {m}.", "**{m}**", "  {m}\n"]


def _check_golden(path: Path, text: str) -> None:
    if os.environ.get("LIGHTSPIEL_UPDATE_GOLDEN"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert text == path.read_text()


def _make(spec: GameSpec):
    return gymnasium.make(
        spec.env_id, illegal_rule="retry", max_retries=2, disable_env_checker=True, **spec.golden.kwargs
    ).unwrapped


def scripted_transcript(spec: GameSpec) -> str:
    """The learner plays the spec's scripted answers."""
    golden = spec.golden
    env = _make(spec)
    obs, info = env.reset(seed=golden.seed)
    options = "".join(f", {k}={v}" for k, v in golden.kwargs.items())
    lines = [f"# {env.game_name}{options}, illegal_rule=retry, reset(seed={golden.seed})"]
    for seat, _, text in info["opponent_actions"]:
        lines.append(f"[opponent seat {seat} plays {text}]")
    answers = iter(golden.answers)
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


def game_transcript(spec: GameSpec) -> str:
    """The learner answers once with no move, then random legal moves in several answer formats."""
    kwargs, seed = spec.golden.kwargs, spec.golden.seed
    env = _make(spec)
    rng = np.random.default_rng(seed)
    obs, info = env.reset(seed=seed)
    options = ", ".join(f"{k}={v}" for k, v in sorted(kwargs.items()))
    lines = [
        f"# {spec.env_id} ({env.game_name}){', ' + options if options else ''}, illegal_rule=retry, reset(seed={seed})"
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


@pytest.mark.parametrize("label", list(GOLDEN_SPECS))
def test_golden_transcripts(label):
    spec = GOLDEN_SPECS[label]
    text = scripted_transcript(spec) if spec.golden.answers else game_transcript(spec)
    _check_golden(GOLDEN_DIR / spec.golden.file_name, text)


def test_golden_folder_is_the_registry():
    """Every registered game has a golden transcript and every golden file belongs to a game."""
    assert all(spec.golden is not None for spec in GAMES)
    assert sorted(p.name for p in GOLDEN_DIR.glob("*.txt")) == sorted(
        spec.golden.file_name for spec in GOLDEN_SPECS.values()
    )


def first_prompt(label: str) -> str:
    """The first prompt of a golden file (what docs/games.md shows)."""
    text = (GOLDEN_DIR / GOLDEN_SPECS[label].golden.file_name).read_text()
    body = text.split("--- prompt (seat ", 1)[1].split("\n", 1)[1]
    return body.split("\n>>> ", 1)[0]


def test_docs_show_the_golden_prompts():
    docs = (Path(__file__).resolve().parents[2] / "docs" / "games.md").read_text()
    for label in GOLDEN_SPECS:
        assert first_prompt(label) in docs, label

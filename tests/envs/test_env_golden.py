"""Golden transcript: every prompt of a fixed-seed tic-tac-toe game, compared exactly.

Regenerate (then read the file to check it!) with::

    LIGHTSPIEL_UPDATE_GOLDEN=1 pytest tests/envs/test_env_golden.py
"""

from __future__ import annotations

import os
from pathlib import Path

from envs import OpenSpielTextEnv

GOLDEN = Path(__file__).resolve().parent / "golden" / "tic_tac_toe_vs_heuristic_seed7.txt"

# The learner's answers, in order: an unparseable answer (retried), an occupied cell (retried),
# then plain moves in the documented formats.
ANSWERS = ["Let me think about it.", "5", "1", "I play 3", "8", "Cell 4.", "6", "7", "9", "2"]


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
    text = transcript()
    if os.environ.get("LIGHTSPIEL_UPDATE_GOLDEN"):
        GOLDEN.parent.mkdir(parents=True, exist_ok=True)
        GOLDEN.write_text(text)
    assert text == GOLDEN.read_text()

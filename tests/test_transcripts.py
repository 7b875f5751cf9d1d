"""Transcripts: a real tic-tac-toe game rendered for TensorBoard's text tab."""

from types import SimpleNamespace

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch.utils.tensorboard import SummaryWriter

from datamodules.rollout import RolloutEngine
from datamodules.transcripts import log_transcripts, transcript


class _Scripted:
    """Answers nonsense on its first turn, then the first legal move."""

    def __init__(self):
        self.calls = 0

    def act(self, observations, mode="generate", greedy=False, temperature=None):
        self.calls += 1
        text = "banana" if self.calls == 1 else None
        return [
            SimpleNamespace(index=None, text=text or o["legal_actions"][0], logp=None) for o in observations
        ]


def _game():
    engine = RolloutEngine("lightspiel/TicTacToe-v0", {"opponent": "random", "illegal_rule": "random"}, 1)
    (episode,) = engine.play(_Scripted(), [7], mode="generate", progress=None).episodes
    return episode


def test_transcript_shows_what_the_seat_read_answered_and_what_the_env_made_of_it():
    episode = _game()
    text = transcript(episode)
    first = episode.turns[0]
    assert "**lightspiel/TicTacToe-v0** seed 7, vs random" in text
    # The prompt is a code block, line by line, and each turn says what happened.
    assert all(f"    {line}" in text for line in first.prompt.splitlines())
    assert f"answers `banana`: **unparsed**: a random legal move was played ({first.action_text})" in text
    second = episode.turns[1]
    assert f"answers `{second.completion}`: played **{second.action_text}**" in text
    assert text.count("reads:") == len(episode.turns)
    result = f"Result: seat 0: {episode.returns[0]:+g}, seat 1: {episode.returns[1]:+g}"
    assert text.endswith(f"{result} (illegal-answer penalties 1)")  # the default penalty, once
    short = transcript(episode, max_turns=1)
    assert short.count("reads:") == 1 and f"{len(episode.turns) - 1} more turns" in short


def test_log_transcripts_writes_a_text_entry_and_skips_loggers_without_text(tmp_path):
    episode = _game()
    writer = SummaryWriter(str(tmp_path))
    assert log_transcripts(SimpleNamespace(experiment=writer), "eval/games", [episode, episode], step=3)
    writer.close()
    acc = EventAccumulator(str(tmp_path), size_guidance={"tensors": 0})
    acc.Reload()
    (event,) = acc.Tensors("eval/games/text_summary")
    body = event.tensor_proto.string_val[0].decode()
    assert event.step == 3 and body.count("seed 7") == 2 and "\n---\n" in body
    assert not log_transcripts(SimpleNamespace(), "eval/games", [episode], step=0)  # e.g. a CSV logger
    assert not log_transcripts(SimpleNamespace(experiment=writer), "eval/games", [], step=0)

"""Game transcripts a person can read in TensorBoard's text tab.

:func:`transcript` renders one finished :class:`~datamodules.records.Episode` as Markdown: per learner
turn, what the seat read (the prompt, in a code block), what it answered and what the env made of it
(the move applied, or illegal/unparsed and the rule that resolved it), then the outcome per seat.
:func:`log_transcripts` adds a few of them to a TensorBoard logger as one text entry. Torch-free.
"""

from __future__ import annotations

from collections.abc import Sequence

from datamodules.records import Episode

__all__ = ["log_transcripts", "transcript"]

#: Longest answer shown in full; longer ones are cut with an ellipsis.
MAX_ANSWER_CHARS = 160


def _indent(text: str) -> str:
    """A Markdown code block (four-space indent), which TensorBoard shows verbatim."""
    return "\n".join("    " + line for line in text.splitlines())


def _what_happened(turn) -> str:
    if turn.legal:
        return f"played **{turn.action_text}**"
    kind = "illegal" if turn.parsed else "unparsed"
    resolved = {
        "random": f"a random legal move was played ({turn.action_text})",
        "retry": "asked again",
        "forfeit": "the game was forfeited",
    }.get(turn.rule or "", "no move")
    return f"**{kind}**: {resolved}"


def transcript(episode: Episode, max_turns: int = 12) -> str:
    """One game as Markdown (at most ``max_turns`` turns shown; the rest are counted)."""
    seat = "self-play" if episode.learner_seat < 0 else f"learner seat {episode.learner_seat}"
    lines = [
        f"**{episode.env_id}** seed {episode.seed}, vs {episode.opponent}, {seat}, "
        f"{episode.mode} mode, iteration {episode.iteration}",
        "",
    ]
    for k, turn in enumerate(episode.turns[:max_turns]):
        answer = turn.completion.replace("\n", " ").strip()
        if len(answer) > MAX_ANSWER_CHARS:
            answer = answer[:MAX_ANSWER_CHARS] + "..."
        who = "" if turn.player == "learner" else f" ({turn.player})"
        lines += [
            f"Turn {k + 1}, seat {turn.seat}{who} reads:",
            "",
            _indent(turn.prompt),
            "",
            f"answers `{answer or '(nothing)'}`: {_what_happened(turn)}",
            "",
        ]
    if len(episode.turns) > max_turns:
        lines += [f"... {len(episode.turns) - max_turns} more turns", ""]
    returns = ", ".join(f"seat {s}: {r:+g}" for s, r in enumerate(episode.returns))
    penalties = sum(episode.penalties)
    lines.append(f"Result: {returns}" + (f" (illegal-answer penalties {penalties:g})" if penalties else ""))
    return "\n".join(lines)


def log_transcripts(logger, tag: str, episodes: Sequence[Episode], step: int, count: int = 2) -> bool:
    """Add the first ``count`` games as one text entry under ``tag``; a logger without text support
    (not TensorBoard) is skipped. Returns whether anything was logged."""
    add_text = getattr(getattr(logger, "experiment", None), "add_text", None)
    if add_text is None or not episodes or count < 1:
        return False
    games = "\n\n---\n\n".join(transcript(e) for e in episodes[:count])
    add_text(tag, games, global_step=step)
    return True

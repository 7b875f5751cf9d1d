"""The records that cross from rollout to training: Turn, Episode and PreferencePair.

Files are JSON Lines. Episodes are appended one line per finished episode (flushed and fsynced, so a
crash loses at most the episodes in flight); pair files are written whole under a temporary name and
renamed (:func:`atomic_open`, the one helper every whole-file write in the project goes through). Every
line read is validated: a bad one raises ``DataFileError`` naming file, line and field.

This module imports neither torch nor Lightning.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import tempfile
import types
import typing
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from modules.errors import DataFileError


@dataclass
class Turn:
    """One decision by a learner seat."""

    seat: int
    prompt: str
    legal_actions: list[str]
    completion: str  # what the policy answered: free text (generate) or an action's text (score)
    action: int | None  # OpenSpiel action applied; None when the answer was retried
    action_text: str | None
    parsed: bool
    legal: bool
    outcome: str  # "ok" | "illegal" | "unparsed"
    rule: str | None  # illegal-move rule that fired, if any
    history: list[int]  # OpenSpiel action history of the decision state
    reward: float  # for the seat that answered: its return change over the step minus its penalty
    logp: float | None = None  # log-probability of the answer under the sampling policy (summed)
    player: str = "learner"  # who answered: "learner", or the name of another seated player
    learner: bool = True  # the turn is training data (the answering player is being trained)
    # On-policy fields (PPO/GRPO): the sampled completion's token ids (ending with the end-of-turn
    # token when the policy stopped), their per-token log-probabilities at sampling time, and the
    # value head's estimate of the decision state. None where the acting mode does not produce them.
    completion_ids: list[int] | None = None
    token_logps: list[float] | None = None
    value: float | None = None
    # A reasoning env's verdict on the answer (envs.reasoning): the extracted answer, correctness and
    # reward terms for math; per-step solver verdicts for proofs. None for games.
    verdict: dict | None = None
    # Score mode with ``RolloutEngine.play(answer_logps=True)``: the log-probability at temperature
    # 1 of every legal action's text and of every readable illegal answer at this decision, under
    # the acting policy (the episode's ``policy_fingerprint``). DPO reads its reference from them.
    answer_logps: dict[str, float] | None = None


@dataclass
class Episode:
    """One finished game, as the rollout engine saw it."""

    episode_id: str
    game: str
    env_id: str
    seed: int
    opponent: str
    learner_seat: int  # -1 in self-play
    turns: list[Turn]
    returns: list[float]  # per seat, from the game
    penalties: list[float]  # per seat, illegal-answer penalties
    truncated: bool = False
    iteration: int = 0
    mode: str = "score"
    players: list[str] = field(default_factory=list)  # who sat in each seat (empty: learner vs env opponent)
    start_history: list[int] = field(default_factory=list)  # a replayed start's OpenSpiel history, if any
    policy_fingerprint: str | None = None  # the learner's weights (Policy.fingerprint) with answer_logps


@dataclass
class PreferencePair:
    """A DPO pair: the user prompt, the preferred and the other answer, scores and provenance.

    On disk (:func:`to_json`) a pair is in TRL's conversational shape, so that TRL's trainers apply
    the model's chat template to the same messages lightspiel trains on: ``prompt`` is a list of chat
    messages (the ``system`` message the policy used, then the user prompt), ``chosen`` and
    ``rejected`` one assistant message each; the other fields ride alongside. Files in the plain
    shape (``prompt``, ``chosen``, ``rejected`` as strings) still load.
    """

    pair_id: str
    prompt: str
    chosen: str
    rejected: str
    chosen_score: float
    rejected_score: float
    strategy: str
    state_key: str
    game: str
    seat: int
    episode_ids: list[str] = field(default_factory=list)
    iteration: int = 0
    system: str | None = None  # the system message of the policy the pair is for (None: none sent)
    # A judge's re-scoring of an ambiguous pair: {"model", "decision" (keep/flip/drop), "confidence"
    # (its probability that the chosen answer is better), "gap"}; None when no judge looked at it.
    judge: dict | None = None


@dataclass
class SFTExample:
    """A supervised example: the user prompt and the gold completion (a worked solution, the oracle's
    move), with where it came from. On disk in TRL's conversational prompt-completion shape
    (:func:`sft_to_trl`); plain ``{"prompt": str, "completion": str}`` lines and ``{"messages":
    [system?, user, assistant]}`` lines load too."""

    prompt: str
    completion: str
    source: str = ""
    system: str | None = None


R = TypeVar("R", Turn, Episode, PreferencePair, SFTExample)


def _matches(value, hint) -> bool:
    origin = typing.get_origin(hint)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint in (str, bool, dict):
        return isinstance(value, hint)
    if hint is type(None):
        return value is None
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, h) for h in typing.get_args(hint))
    if origin is list:
        (inner,) = typing.get_args(hint)
        return isinstance(value, list) and all(_matches(v, inner) for v in value)
    if origin is dict:
        keys, values = typing.get_args(hint)
        return isinstance(value, dict) and all(_matches(k, keys) and _matches(v, values) for k, v in value.items())
    return True  # nested records are checked by from_dict


def _describe(hint) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


def _message(value, path, line, name: str, role: str) -> str:
    if not (isinstance(value, dict) and value.get("role") == role and isinstance(value.get("content"), str)):
        raise DataFileError(
            path,
            line,
            name,
            f'expected a {{"role": "{role}", "content": str}} message, got {json.dumps(value)[:60]}',
        )
    return value["content"]


def _system_and_user(messages: list, path, line) -> tuple[str | None, str]:
    """A one-turn chat prompt, ``[system message,] user message``, as (system or None, user)."""
    system = [m for m in messages if isinstance(m, dict) and m.get("role") == "system"]
    if len(messages) != len(system) + 1 or len(system) > 1:
        raise DataFileError(path, line, "prompt", "expected [system message,] user message")
    first = _message(system[0], path, line, "prompt[0]", "system") if system else None
    return first, _message(messages[-1], path, line, f"prompt[{len(messages) - 1}]", "user")


def _pair_from_conversation(data: dict, path, line) -> dict:
    """A pair in TRL's conversational shape, back to lightspiel's strings (plain pairs pass)."""
    if not isinstance(data.get("prompt"), list):
        return data
    data = dict(data)
    data["system"], data["prompt"] = _system_and_user(data["prompt"], path, line)
    for key in ("chosen", "rejected"):
        answer = data.get(key)
        if isinstance(answer, list):
            if len(answer) != 1:
                raise DataFileError(path, line, key, f"expected one assistant message, got {len(answer)}")
            data[key] = _message(answer[0], path, line, f"{key}[0]", "assistant")
    return data


def _sft_from_conversation(data: dict, path, line) -> dict:
    """An SFT line in TRL's shapes (``messages``; conversational prompt/completion) to strings."""
    data = dict(data)
    if "messages" in data:
        messages = data.pop("messages")
        if not isinstance(messages, list) or not messages:
            raise DataFileError(path, line, "messages", "expected a list of chat messages")
        data["prompt"], data["completion"] = messages[:-1], messages[-1:]
    if isinstance(data.get("prompt"), list):
        data["system"], data["prompt"] = _system_and_user(data["prompt"], path, line)
    if isinstance(data.get("completion"), list):
        if len(data["completion"]) != 1:
            raise DataFileError(path, line, "completion", "expected one assistant message")
        data["completion"] = _message(data["completion"][0], path, line, "completion[0]", "assistant")
    for key in ("prompt", "completion"):
        if isinstance(data.get(key), str) and not data[key].strip():
            raise DataFileError(path, line, key, "expected a non-empty string")
    return data


def sft_to_trl(example: SFTExample) -> dict:
    """The example as TRL's conversational prompt-completion row, ``source`` alongside."""
    system = [{"role": "system", "content": example.system}] if example.system is not None else []
    return {
        "prompt": system + [{"role": "user", "content": example.prompt}],
        "completion": [{"role": "assistant", "content": example.completion}],
        "source": example.source,
    }


def pair_to_trl(pair: PreferencePair) -> dict:
    """The pair as TRL's conversational preference example, provenance fields alongside."""
    row = dataclasses.asdict(pair)
    system = row.pop("system")
    row["prompt"] = ([{"role": "system", "content": system}] if system is not None else []) + [
        {"role": "user", "content": pair.prompt}
    ]
    row["chosen"] = [{"role": "assistant", "content": pair.chosen}]
    row["rejected"] = [{"role": "assistant", "content": pair.rejected}]
    return row


def from_dict(cls: type[R], data, path: str | Path = "<memory>", line: int = 0, prefix: str = "") -> R:
    """Build a record from a decoded JSON object, checking every field's presence and type."""
    if not isinstance(data, dict):
        raise DataFileError(
            path, line, prefix or "<line>", f"expected a JSON object, got {type(data).__name__}"
        )
    if cls is PreferencePair:
        data = _pair_from_conversation(data, path, line)
    elif cls is SFTExample:
        data = _sft_from_conversation(data, path, line)
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for f in dataclasses.fields(cls):
        name = f"{prefix}{f.name}"
        if f.name not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise DataFileError(path, line, name, "missing")
            continue
        value, hint = data[f.name], hints[f.name]
        if f.name == "turns":
            if not isinstance(value, list):
                raise DataFileError(path, line, name, f"expected a list, got {type(value).__name__}")
            value = [from_dict(Turn, t, path, line, f"{name}[{i}].") for i, t in enumerate(value)]
        elif not _matches(value, hint):
            raise DataFileError(path, line, name, f"expected {_describe(hint)}, got {json.dumps(value)[:60]}")
        kwargs[f.name] = value
    return cls(**kwargs)


def to_json(record) -> str:
    """One JSON line; a :class:`PreferencePair` or :class:`SFTExample` in TRL's conversational shape."""
    if isinstance(record, PreferencePair):
        row = pair_to_trl(record)
    elif isinstance(record, SFTExample):
        row = sft_to_trl(record)
    else:
        row = dataclasses.asdict(record)
    return json.dumps(row, ensure_ascii=False)


def read_jsonl(path: str | Path, cls: type[R]) -> list[R]:
    """Read and validate every line of a JSONL file of ``cls`` records."""
    return list(iter_jsonl(path, cls))


def iter_jsonl(path: str | Path, cls: type[R]) -> Iterator[R]:
    path = Path(path)
    if not path.is_file():
        raise DataFileError(
            path, 0, "<file>", f"no such file (expected a JSONL file of {cls.__name__} records)"
        )
    with path.open(encoding="utf-8") as fh:
        for lineno, text in enumerate(fh, start=1):
            if not text.strip():
                continue
            try:
                data = json.loads(text)
            except json.JSONDecodeError as err:
                raise DataFileError(path, lineno, "<line>", f"not valid JSON ({err.msg})") from None
            yield from_dict(cls, data, path, lineno)


class EpisodeWriter:
    """Appends episodes to a JSONL file, one durable line per finished episode."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = self.path.open("a", encoding="utf-8")

    def write(self, episode: Episode) -> None:
        self._fh.write(to_json(episode) + "\n")
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> EpisodeWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@contextlib.contextmanager
def atomic_open(path: str | Path) -> Iterator[typing.TextIO]:
    """Open ``path`` for writing text all at once: the data goes to a temporary file in the same
    folder, is flushed and fsynced, and replaces ``path`` only when the block ends without an error.
    A reader (or a killed run) sees the old file or the new one, never half of one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_jsonl_atomic(path: str | Path, records: Iterable) -> None:
    """Write records (or ready JSON strings) to ``path`` as JSON Lines, atomically."""
    with atomic_open(path) as fh:
        for r in records:
            fh.write((r if isinstance(r, str) else to_json(r)) + "\n")


def write_json_atomic(path: str | Path, data) -> None:
    """Write ``data`` as indented JSON to ``path``, atomically."""
    with atomic_open(path) as fh:
        json.dump(data, fh, indent=2)
        fh.write("\n")


def read_complete_episodes(path: str | Path) -> list[Episode]:
    """Episodes of a file a killed run may have left: a torn last line (no newline) is dropped."""
    path = Path(path)
    if not path.exists():
        return []
    raw = path.read_bytes()
    if raw and not raw.endswith(b"\n"):
        cut = raw.rfind(b"\n") + 1
        with path.open("r+b") as fh:  # drop the torn tail so appends start on a clean line
            fh.truncate(cut)
    return read_jsonl(path, Episode) if path.stat().st_size else []

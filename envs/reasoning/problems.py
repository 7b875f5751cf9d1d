"""Where reasoning problems come from: a user's JSONL file, or an offline generator.

A :class:`Problem` is a question, its exact answer and, where the source has one, a worked solution
that ends in the answer marker (``#### 42``): the gold completion SFT trains on.

Sources (``problem(seed)`` gives the problem of a seed; the same seed always gives the same one):

- :class:`JsonlProblems`: a file in GSM8K's shape, one ``{"question": str, "answer": str}`` per line,
  the answer being a worked solution that ends in ``#### <number>`` (or just the number). Every line
  is validated when the file is opened; a bad one is a ``DataFileError`` naming file, line and field.
  Seed ``s`` picks line ``s mod n``.
- :class:`GymProblems`: a task of the ``reasoning-gym`` package (procedural, offline, e.g.
  ``chain_sum``, ``basic_arithmetic``, ``leg_counting``, ``gsm_symbolic``), with the task's own
  options (``min_terms``, ``max_digits``, ...). Seed ``s`` is the generator's seed for one problem.

Imports nothing of ours but the errors; no torch.
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass
from pathlib import Path

from envs.reasoning.answers import to_number
from modules.errors import ConfigError, DataFileError, did_you_mean

MARKER = "####"


@dataclass(frozen=True)
class Problem:
    """One problem: ``question``, its exact ``answer``, a worked ``solution`` ending in
    ``#### <answer>`` (just the marker line where the source has no worked solution), and where it
    came from (``source``: ``"<task>"`` or ``"<file>:<line>"``)."""

    question: str
    answer: str
    solution: str
    source: str


def _solution_line(answer: str) -> str:
    return f"{MARKER} {answer}"


class JsonlProblems:
    """Problems from a JSONL file in GSM8K's shape (see the module docstring)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.name = self.path.name
        if not self.path.is_file():
            raise DataFileError(
                self.path, 0, "<file>", 'no such file (expected JSONL lines {"question", "answer"})'
            )
        self.problems: list[Problem] = []
        try:
            with self.path.open(encoding="utf-8") as fh:
                for lineno, text in enumerate(fh, start=1):
                    if text.strip():
                        self.problems.append(self._parse(text, lineno))
        except UnicodeDecodeError as err:
            raise DataFileError(self.path, 0, "<file>", f"not UTF-8 text ({err.reason})") from None
        if not self.problems:
            raise DataFileError(self.path, 0, "<file>", "the file holds no problems")

    def _parse(self, text: str, lineno: int) -> Problem:
        try:
            row = json.loads(text)
        except json.JSONDecodeError as err:
            raise DataFileError(self.path, lineno, "<line>", f"not valid JSON ({err.msg})") from None
        if not isinstance(row, dict):
            raise DataFileError(
                self.path, lineno, "<line>", f"expected a JSON object, got {type(row).__name__}"
            )
        for key in ("question", "answer"):
            if key not in row:
                raise DataFileError(self.path, lineno, key, "missing")
            if not isinstance(row[key], str) or not row[key].strip():
                raise DataFileError(
                    self.path, lineno, key, f"expected a non-empty string, got {json.dumps(row[key])[:60]}"
                )
        worked = row["answer"].strip()
        final = worked.rsplit(MARKER, 1)[-1].strip() if MARKER in worked else worked
        if to_number(final) is None:
            raise DataFileError(
                self.path, lineno, "answer", f"expected a number after '{MARKER} ', got {final[:40]!r}"
            )
        solution = worked if MARKER in worked else _solution_line(final)
        answer = final.replace(",", "")
        return Problem(row["question"].strip(), answer, solution, f"{self.name}:{lineno}")

    def problem(self, seed: int) -> Problem:
        return self.problems[seed % len(self.problems)]

    def __len__(self) -> int:
        return len(self.problems)


def _arithmetic_steps(expression: str, answer: str) -> str:
    """A worked solution for a chain of additions and subtractions, one operation per line (left to
    right); any other expression gets one line."""
    tokens = expression.replace("−", "-").split()
    if len(tokens) >= 3 and len(tokens) % 2 == 1 and all(t in "+-" for t in tokens[1::2]):
        try:
            total = int(tokens[0])
            lines = []
            for op, term in zip(tokens[1::2], tokens[2::2]):
                new = total + int(term) if op == "+" else total - int(term)
                lines.append(f"{total} {op} {term} = {new}")
                total = new
            if str(total) == answer:
                return "\n".join([*lines, _solution_line(answer)])
        except ValueError:
            pass
    return f"{expression} = {answer}\n{_solution_line(answer)}"


class GymProblems:
    """Problems from a ``reasoning-gym`` task (see the module docstring)."""

    def __init__(self, task: str, options: dict | None = None) -> None:
        from reasoning_gym.factory import DATASETS

        if task not in DATASETS:
            hint = did_you_mean(task, list(DATASETS)) or f"; e.g. {', '.join(sorted(DATASETS)[:8])}, ..."
            raise ConfigError(f"env option task: unknown reasoning-gym task {task!r}{hint}")
        self.task = self.name = task
        self.options = dict(options or {})
        fields = [f.name for f in dataclasses.fields(DATASETS[task][1]) if f.name not in ("seed", "size")]
        for key in self.options:
            if key not in fields:
                hint = did_you_mean(key, fields) or f"; it takes {', '.join(fields)}"
                raise ConfigError(f"env option task_options: {task!r} has no option {key!r}{hint}")
        try:  # the task's own validation, once, before any episode
            first = self._item(0)
        except (AssertionError, ValueError, TypeError) as err:
            raise ConfigError(f"env option task_options for {task!r}: {err or 'invalid'}") from None
        if to_number(str(first["answer"])) is None:
            raise ConfigError(
                f"env option task: {task!r} has answers that are not numbers (e.g. {str(first['answer'])[:40]!r}); "
                "lightspiel/Math-v0 checks numeric answers"
            )

    def _item(self, seed: int) -> dict:
        import reasoning_gym

        return reasoning_gym.create_dataset(self.task, size=1, seed=int(seed), **self.options)[0]

    def problem(self, seed: int) -> Problem:
        item = self._item(seed)
        answer, meta = str(item["answer"]).strip(), item.get("metadata", {})
        if isinstance(meta.get("answer_cot"), str):  # gsm_symbolic: a GSM8K-style worked solution
            cot = meta["answer_cot"].strip()
            solution = cot if MARKER in cot else f"{cot}\n{_solution_line(answer)}"
        elif isinstance(meta.get("expression"), str):
            solution = _arithmetic_steps(meta["expression"], answer)
        else:
            solution = _solution_line(answer)
        solution = re.sub(rf"{MARKER}\s*[^\n]*$", lambda _m: _solution_line(answer), solution)
        return Problem(str(item["question"]).strip(), answer, solution, self.task)

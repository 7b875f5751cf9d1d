"""PrOntoQA-style logic problems (Saparov and He, 2023, arXiv:2210.01240) and the solver that checks a
proof step by step.

A problem: rules ("Every wumpus is a yumpus.", "Every yumpus is not bitter."), one fact ("Alex is a
wumpus."), and a statement to prove true or false ("Alex is bitter."), reached in 1 to N hops, with
distractor rules about other concepts. A proof is written one step per line::

    Alex is a wumpus.
    Every wumpus is a yumpus. So Alex is a yumpus.
    Every yumpus is not bitter. So Alex is not bitter.
    Answer: False

A step either restates a given fact, or cites a given rule and concludes what it gives for an
entity already known to be in the rule's subject class (from the facts or an earlier valid step).
The solver gives every step ``solver_valid`` and ``solver_error`` (``None`` when valid), in order.

Imports nothing of ours; no torch.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

CONCEPTS = (
    "wumpus", "yumpus", "zumpus", "dumpus", "rompus", "numpus", "tumpus", "vumpus", "impus", "jompus",
    "gorpus", "lempus", "sterpus", "brimpus", "lorpus", "grimpus",
)  # fmt: skip
PROPERTIES = (
    "bitter", "bright", "cold", "fast", "happy", "large", "metallic", "opaque", "red", "sour", "small",
    "wooden", "shy", "loud",
)  # fmt: skip
NAMES = ("Alex", "Max", "Polly", "Rex", "Sally", "Sam", "Stella", "Wren", "Fae", "Sophie")

_RULE = re.compile(r"^every (\w+) is (not )?(?:an? )?(\w+)$")
_FACT = re.compile(r"^(\w+) is (not )?(?:an? )?(\w+)$")
_STEP = re.compile(r"^(every \w+ is (?:not )?(?:an? )?\w+)\s*[.,;]\s*so,? (\w+ is (?:not )?(?:an? )?\w+)$")
_ANSWER = re.compile(r"^(?:final )?answer\s*(?:is)?\s*:?\s*(true|false)\b")
_NUMBERING = re.compile(r"^(?:step\s*\d+\s*[:.)]|\d+\s*[.):])\s*")


def _clean(line: str) -> str:
    """A line as the solver reads it: markdown emphasis, bullets and step numbers dropped, spaces
    collapsed, lower case, no final full stop."""
    text = re.sub(r"[*_`]", "", line).strip().lstrip("-•").strip().lower()
    text = _NUMBERING.sub("", text)
    return re.sub(r"\s+", " ", text).rstrip(".").strip()


def _statement(text: str) -> tuple[str, bool, str] | None:
    """``"alex is not a wumpus"`` -> ``("alex", False, "wumpus")``."""
    m = _FACT.match(_clean(text))
    return (m.group(1), m.group(2) is None, m.group(3)) if m else None


def _rule(text: str) -> tuple[str, bool, str] | None:
    """``"every wumpus is not bitter"`` -> ``("wumpus", False, "bitter")``."""
    m = _RULE.match(_clean(text))
    return (m.group(1), m.group(2) is None, m.group(3)) if m else None


def _article(word: str) -> str:
    if word in PROPERTIES:
        return word
    return f"an {word}" if word[0] in "aeiou" else f"a {word}"


def say_rule(subject: str, positive: bool, predicate: str) -> str:
    return f"Every {subject} is {'' if positive else 'not '}{_article(predicate)}."


def say_fact(entity: str, positive: bool, predicate: str) -> str:
    return f"{entity} is {'' if positive else 'not '}{_article(predicate)}."


@dataclass(frozen=True)
class LogicProblem:
    """Rules and facts (sentences), the statement to judge, its truth, and a gold proof (lines)."""

    premises: tuple[str, ...]
    query: str
    answer: bool
    proof: tuple[str, ...]
    hops: int
    source: str = "generated"


def generate(seed: int, min_hops: int = 1, max_hops: int = 3, distractors: int = 2) -> LogicProblem:
    """A problem of ``min_hops`` to ``max_hops`` rule applications, with ``distractors`` extra rules."""
    rng = np.random.default_rng([int(seed), 4004])
    hops = int(rng.integers(min_hops, max_hops + 1))
    concepts = [str(c) for c in rng.permutation(CONCEPTS)]
    chain, others = concepts[:hops], concepts[hops:]
    prop = str(rng.choice(PROPERTIES))
    positive = bool(rng.integers(2))
    entity = str(rng.choice(NAMES))
    rules = [say_rule(chain[i], True, chain[i + 1]) for i in range(hops - 1)]
    rules.append(say_rule(chain[-1], positive, prop))
    extra = []
    for k in range(distractors):  # rules about concepts the entity never reaches
        subject = others[k % len(others)]
        if k % 2 == 0:
            extra.append(say_rule(subject, not positive, prop))  # the opposite property: a trap
        else:
            extra.append(say_rule(subject, True, others[(k + 1) % len(others)]))
    premises = [*rules, *extra]
    order = rng.permutation(len(premises))
    premises = [premises[i] for i in order] + [say_fact(entity, True, chain[0])]
    proof = [say_fact(entity, True, chain[0])]
    for i in range(hops - 1):
        proof.append(f"{say_rule(chain[i], True, chain[i + 1])} So {say_fact(entity, True, chain[i + 1])}")
    proof.append(f"{say_rule(chain[-1], positive, prop)} So {say_fact(entity, positive, prop)}")
    query = say_fact(entity, True, prop)
    return LogicProblem(tuple(premises), query, positive, (*proof, f"Answer: {positive}"), hops)


def check_proof(premises: tuple[str, ...] | list[str], query: str, text: str) -> dict:
    """Check a written proof against the premises, step by step (see the module docstring).

    Returns ``{"steps": [{"line", "solver_valid", "solver_error", "kind"}], "answer": True/False/None,
    "proved": True/False/None}``: ``kind`` is ``fact`` (a given fact restated: valid, but it proves
    nothing), ``rule`` (a rule applied) or ``invalid``; ``proved`` is the truth of the statement as
    valid steps established it (None: they never reached it). Any text is judged; nothing raises.
    """
    rules = {r for r in (_rule(p) for p in premises) if r is not None}
    given = {f for f in (_statement(p) for p in premises) if f is not None}
    known = set(given)
    target = _statement(query)
    steps, answer = [], None
    for raw in (text or "").splitlines()[:64]:
        line = _clean(raw)
        if not line:
            continue
        m = _ANSWER.match(line)
        if m:
            answer = m.group(1) == "true"
            break
        steps.append({"line": raw.strip()[:200], **_judge_step(line, rules, known)})
    proved = None
    if target is not None:
        for sign in (True, False):
            if (target[0], sign, target[2]) in known - given:
                proved = sign == target[1]
    return {"steps": steps, "answer": answer, "proved": proved}


def _judge_step(line: str, rules: set, known: set) -> dict:
    """One step's verdict; a valid step adds its conclusion to ``known``."""
    m = _STEP.match(line)
    if m is None:
        fact = _statement(line)
        if fact is None:
            return {
                "kind": "invalid",
                "solver_valid": False,
                "solver_error": "unreadable: expected '<rule>. So <name> is <...>.'",
            }
        if fact in known:
            return {"kind": "fact", "solver_valid": True, "solver_error": None}
        return {
            "kind": "invalid",
            "solver_valid": False,
            "solver_error": "states something neither given nor proved, citing no rule",
        }
    rule, conclusion = _rule(m.group(1)), _statement(m.group(2))
    if rule not in rules:
        return {
            "kind": "invalid",
            "solver_valid": False,
            "solver_error": f"cites a rule that is not given: '{m.group(1)}'",
        }
    if conclusion is None:
        return {"kind": "invalid", "solver_valid": False, "solver_error": "unreadable conclusion"}
    entity = conclusion[0]
    subject, sign, predicate = rule
    if (entity, True, subject) not in known:
        return {
            "kind": "invalid",
            "solver_valid": False,
            "solver_error": f"{entity} is not known to be a {subject} yet",
        }
    if conclusion[1:] != (sign, predicate):
        return {
            "kind": "invalid",
            "solver_valid": False,
            "solver_error": "the conclusion is not what the rule gives",
        }
    known.add(conclusion)
    return {"kind": "rule", "solver_valid": True, "solver_error": None}


def load_logic_problems(path: str | Path) -> list[LogicProblem]:
    """Problems from a JSONL file: ``{"premises": [str], "query": str, "answer": bool}`` per line
    (an optional ``"proof": [str]`` is the gold proof). Raises ``ValueError`` naming line and field
    (the env wraps it in a DataFileError)."""
    out = []
    with Path(path).open(encoding="utf-8") as fh:
        for lineno, text in enumerate(fh, start=1):
            if not text.strip():
                continue
            try:
                row = json.loads(text)
            except json.JSONDecodeError as err:
                raise ValueError(f"{lineno}\x00<line>\x00not valid JSON ({err.msg})") from None
            if not isinstance(row, dict):
                raise ValueError(f"{lineno}\x00<line>\x00expected a JSON object")
            premises = row.get("premises")
            if (
                not isinstance(premises, list)
                or not premises
                or not all(isinstance(p, str) for p in premises)
            ):
                raise ValueError(f"{lineno}\x00premises\x00expected a non-empty list of sentences")
            if not isinstance(row.get("query"), str) or _statement(row["query"]) is None:
                raise ValueError(f"{lineno}\x00query\x00expected a statement like 'Alex is bitter.'")
            if not isinstance(row.get("answer"), bool):
                raise ValueError(f"{lineno}\x00answer\x00expected true or false")
            proof = row.get("proof") or [f"Answer: {row['answer']}"]
            out.append(
                LogicProblem(
                    tuple(premises),
                    row["query"],
                    row["answer"],
                    tuple(proof),
                    0,
                    f"{Path(path).name}:{lineno}",
                )
            )
    if not out:
        raise ValueError("0\x00<file>\x00the file holds no problems")
    return out

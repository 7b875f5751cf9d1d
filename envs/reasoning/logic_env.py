"""``lightspiel/LogicProof-v0``: prove a statement true or false from given rules, one step per line.

Problems are generated offline (:func:`envs.reasoning.logic.generate`: 1 to N hops, distractor
rules) or read from a user's JSONL file. Every step of the answer is checked by the solver
(:func:`envs.reasoning.logic.check_proof`); the verdict carries seed 004's per-step ``solver_valid``
and ``solver_error``. Reward = the share of valid steps + 1 if the final ``Answer: True|False`` is
right (so 0 to 2); a restated fact is valid but not counted in the share (it proves nothing).
"""

from __future__ import annotations

from envs.reasoning.base import ReasoningEnv
from envs.reasoning.logic import LogicProblem, check_proof, generate, load_logic_problems
from modules.errors import ConfigError, DataFileError

INSTRUCTIONS = (
    "Prove whether the statement is true or false, one step per line. A step restates the fact, or "
    'cites one rule above and concludes from it: "<rule>. So <name> is <...>." '
    "End with: Answer: True or Answer: False"
)


class LogicProofEnv(ReasoningEnv):
    """Step-by-step logic proofs checked by a solver.

    Args:
        min_hops: Fewest rule applications a proof needs.
        max_hops: Most rule applications a proof needs.
        distractors: Extra rules about concepts the entity never reaches.
        problems_path: A JSONL file of ``{"premises": [str], "query": str, "answer": bool}`` instead.
    """

    def __init__(
        self,
        min_hops: int = 1,
        max_hops: int = 3,
        distractors: int = 2,
        problems_path: str | None = None,
        opponent: str = "self",
        render_mode: str | None = None,
    ) -> None:
        super().__init__(opponent, render_mode)
        if not 1 <= min_hops <= max_hops <= 12:
            raise ConfigError(
                f"env options min_hops and max_hops: expected 1 <= min_hops <= max_hops <= 12, got {min_hops}, {max_hops}"
            )
        if not 0 <= distractors <= 8:
            raise ConfigError(f"env option distractors: expected 0 to 8, got {distractors}")
        self.min_hops, self.max_hops, self.distractors = min_hops, max_hops, distractors
        self.problems: list[LogicProblem] | None = None
        if problems_path is not None:
            try:
                self.problems = load_logic_problems(problems_path)
            except FileNotFoundError:
                raise DataFileError(
                    problems_path, 0, "<file>", "no such file (expected JSONL logic problems)"
                ) from None
            except UnicodeDecodeError as err:
                raise DataFileError(problems_path, 0, "<file>", f"not UTF-8 text ({err.reason})") from None
            except ValueError as err:
                line, name, message = str(err).split("\x00")
                raise DataFileError(problems_path, int(line), name, message) from None
        self.name = "logic" if problems_path is None else f"logic:{problems_path}"

    def _problem(self, seed: int) -> LogicProblem:
        if self.problems is not None:
            return self.problems[seed % len(self.problems)]
        return generate(seed, self.min_hops, self.max_hops, self.distractors)

    def _prompt(self, problem: LogicProblem) -> str:
        lines = ["Rules and facts:", *problem.premises, f"Statement: {problem.query}", INSTRUCTIONS]
        return "\n".join(lines)

    def gold_solution(self, seed: int) -> tuple[str, str]:
        """The prompt and the gold proof of the problem of ``seed``."""
        problem = self._problem(seed)
        return self._prompt(problem), "\n".join(problem.proof)

    def _judge(self, problem: LogicProblem, text: str) -> dict:
        checked = check_proof(problem.premises, problem.query, text)
        steps = checked["steps"]
        # Restating a given fact is valid but proves nothing: only the other steps count, so that a
        # one-line "Alex is a wumpus." is not a perfect proof.
        counted = [s for s in steps if s["kind"] != "fact"]
        valid = sum(s["solver_valid"] for s in counted)
        share = valid / len(counted) if counted else 0.0
        correct = checked["answer"] is not None and checked["answer"] == problem.answer
        return {
            "answer": None if checked["answer"] is None else str(checked["answer"]),
            "expected": str(problem.answer),
            "parsed": checked["answer"] is not None or bool(steps),
            "correct": bool(correct),
            "steps": steps,
            "valid_steps": valid,
            "valid_share": share,
            "counted_steps": len(counted),
            # every counted step valid, and the proof reaches the statement with the answer it gives
            "all_valid": bool(counted)
            and valid == len(counted)
            and checked["answer"] is not None
            and checked["proved"] == checked["answer"],
            "proved": checked["proved"],
            "length": len(text),
            "reward_valid": share,
            "reward_correct": float(correct),
            "reward": share + float(correct),
            "hops": problem.hops,
            "source": problem.source,
        }

"""``lightspiel/Math-v0``: one math problem per episode, a free-text answer, an exact check.

The final answer is extracted from the model's text (:func:`envs.reasoning.answers.extract_answer`:
``#### 42``, ``\\boxed{42}``, "the answer is 42", else the last number) and compared by value with
the problem's answer. Reward = ``correct`` (1 or 0) + ``format_reward`` if the answer used the
``#### `` marker - ``length_penalty`` per ``length_unit`` characters beyond ``max_chars``; the verdict
reports each term apart from correctness, so curves of accuracy never mix with shaping.
"""

from __future__ import annotations

from envs.reasoning.answers import answers_match, extract_answer
from envs.reasoning.base import ReasoningEnv
from envs.reasoning.problems import GymProblems, JsonlProblems, Problem
from modules.errors import ConfigError, check_choice

#: How the question is put to the model (seed 003's variants).
PROMPT_VARIANTS: dict[str, str] = {
    "direct": "{question}\nReply with the final answer only, as: #### <answer>",
    "step_by_step": (
        "{question}\nWork it out step by step, one short step per line. "
        "End with the final answer on its own line as: #### <answer>"
    ),
    "reflective": (
        "{question}\nWork it out step by step, then check each step once more. "
        "End with the final answer on its own line as: #### <answer>"
    ),
}

#: The default problems: chains of two or three one- or two-digit additions and subtractions, where
#: the embedded 135M model starts well below its ceiling (docs/reasoning.md gives its accuracy).
DEFAULT_TASK = "chain_sum"
DEFAULT_TASK_OPTIONS = {"min_terms": 2, "max_terms": 3, "min_digits": 1, "max_digits": 2}


class MathEnv(ReasoningEnv):
    """Math word or arithmetic problems with verifiable answers.

    Args:
        task: A ``reasoning-gym`` task name (``chain_sum``, ``basic_arithmetic``, ``leg_counting``,
            ``gsm_symbolic``, ...); ignored when ``problems_path`` is given.
        task_options: The task's own options (e.g. ``max_digits``); the default task's defaults
            when omitted.
        problems_path: A JSONL file of ``{"question", "answer"}`` lines in GSM8K's shape instead.
        prompt_variant: ``direct``, ``step_by_step`` or ``reflective``.
        format_reward: Added when the answer used the ``#### `` marker.
        length_penalty: Subtracted per ``length_unit`` characters beyond ``max_chars``.
        max_chars: Answer length without penalty.
        length_unit: Characters per unit of length penalty.
    """

    def __init__(
        self,
        task: str = DEFAULT_TASK,
        task_options: dict | None = None,
        problems_path: str | None = None,
        prompt_variant: str = "step_by_step",
        format_reward: float = 0.0,
        length_penalty: float = 0.0,
        max_chars: int = 400,
        length_unit: int = 100,
        opponent: str = "self",
        render_mode: str | None = None,
    ) -> None:
        super().__init__(opponent, render_mode)
        check_choice(prompt_variant, tuple(PROMPT_VARIANTS), "env option prompt_variant")
        if max_chars < 1 or length_unit < 1:
            raise ConfigError(
                f"env options max_chars and length_unit must be >= 1, got {max_chars}, {length_unit}"
            )
        if problems_path is not None:
            self.source: JsonlProblems | GymProblems = JsonlProblems(problems_path)
        else:
            if task_options is None:
                task_options = DEFAULT_TASK_OPTIONS if task == DEFAULT_TASK else {}
            self.source = GymProblems(task, task_options)
        self.name = f"math:{self.source.name}"
        self.prompt_variant = prompt_variant
        self.format_reward, self.length_penalty = float(format_reward), float(length_penalty)
        self.max_chars, self.length_unit = max_chars, length_unit

    def _problem(self, seed: int) -> Problem:
        return self.source.problem(seed)

    def _prompt(self, problem: Problem) -> str:
        return PROMPT_VARIANTS[self.prompt_variant].format(question=problem.question)

    def gold_solution(self, seed: int) -> tuple[str, str]:
        """The prompt and the worked solution of the problem of ``seed`` (SFT's gold completion)."""
        problem = self._problem(seed)
        return self._prompt(problem), problem.solution

    def _judge(self, problem: Problem, text: str) -> dict:
        found = extract_answer(text)
        correct = answers_match(found.answer, problem.answer)
        over = max(0, len(text) - self.max_chars)
        format_term = self.format_reward if found.method == "marker" else 0.0
        length_term = -self.length_penalty * over / self.length_unit
        return {
            "answer": found.answer,
            "expected": problem.answer,
            "method": found.method,
            "parsed": found.answer is not None,
            "correct": bool(correct),
            "format_ok": found.method == "marker",
            "length": len(text),
            "reward_correct": float(correct),
            "reward_format": format_term,
            "reward_length": length_term,
            "reward": float(correct) + format_term + length_term,
            "source": problem.source,
        }

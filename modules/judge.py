"""A judge model for ambiguous preference pairs (seed 000, section 7): never in the training loop.

:class:`Judge` is a second, frozen language model (any hub name or local folder; the embedded model by
default) on its own dtype and device. Asked which of two answers is better for the player to move,
its preference is read from log-likelihoods, not from sampled text: ``P(A)`` is the softmax of the
log-probabilities of answering ``A`` and ``B``. Each pair is asked in both orders and the two readings
averaged, so the judge's bias for the first (or second) position cancels:
``preference(prompt, a, b) + preference(prompt, b, a) == 1``.
"""

from __future__ import annotations

import torch

from modules.errors import ConfigError

JUDGE_SYSTEM = "You are an expert judge of game moves and answers. Reply with one letter."
JUDGE_TEMPLATE = (
    "A player was shown this:\n\n{prompt}\n\nAnswer A: {a}\nAnswer B: {b}\n\n"
    "Which answer is better for the player? Reply with A or B."
)


class Judge:
    """A frozen judge model.

    Args:
        model: Hub name or local folder (None: the embedded SmolLM2-135M-Instruct).
        dtype: Its dtype (``auto``, ``float32``, ``bfloat16``).
        batch_size: Questions per forward pass.
    """

    def __init__(self, model: str | None = None, dtype: str = "auto", batch_size: int = 16) -> None:
        from modules.policy import Policy

        try:
            self.policy = Policy(model=model, dtype=dtype, system_prompt=JUDGE_SYSTEM, lora_r=1)
        except ConfigError as err:
            raise ConfigError(f"judge: {err}") from None
        self.policy.requires_grad_(False)
        self.name = model or "embedded SmolLM2-135M-Instruct"
        self.batch_size = batch_size

    @torch.no_grad()
    def _p_first(self, questions: list[tuple[str, str, str]]) -> list[float]:
        """P(the judge answers ``A``) for each ``(prompt, a, b)``. The judge's LoRA adapter is never
        trained and peft starts it at zero, so this is the base model's answer."""
        out: list[float] = []
        pol = self.policy
        letters = [pol.completion_ids("A"), pol.completion_ids("B")]
        with pol.evaluating():
            for start in range(0, len(questions), self.batch_size):
                chunk = questions[start : start + self.batch_size]
                prompts = [pol.prompt_ids(JUDGE_TEMPLATE.format(prompt=p, a=a, b=b)) for p, a, b in chunk]
                logps = pol.completion_logps(prompts, [letters] * len(chunk))  # [n, 2]
                out.extend(torch.softmax(logps.float(), -1)[:, 0].tolist())
        return out

    def preferences(self, triples: list[tuple[str, str, str]]) -> list[float]:
        """For each ``(prompt, a, b)``: the judge's probability that ``a`` is the better answer, read
        in both orders and averaged."""
        if not triples:
            return []
        forward = self._p_first(triples)
        backward = self._p_first([(p, b, a) for p, a, b in triples])
        return [(f + (1.0 - r)) / 2.0 for f, r in zip(forward, backward)]

    def preference(self, prompt: str, a: str, b: str) -> float:
        return self.preferences([(prompt, a, b)])[0]

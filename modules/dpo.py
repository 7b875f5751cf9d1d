"""DPO: Direct Preference Optimization (Rafailov et al., 2023, arXiv:2305.18290) on a LoRA policy.

Batches are lists of preference pairs (prompt, chosen, rejected as text); the module tokenizes them
with its policy. Deliberate deviations from the paper's reference implementation:
- The reference model is the policy with its adapter disabled (or a frozen snapshot adapter when the
  iterative-regeneration callback moves the reference), not a second copy of the weights.
- Each distinct prompt in a batch is run once and its key/value cache shared by all of its
  completions (the datamodule batches the pairs of one state together, so a state with one chosen
  and three rejected moves costs one prompt pass, not six); vocabulary logits are computed only at
  completion positions.
- Batches of SFT examples (the preference datamodule's ``sft_iterations`` stage) train the SFT loss
  instead (:func:`modules.sft.sft_step`), so SFT then DPO is one run.
- Reference log-probabilities are computed once per pair (keyed by a digest of its texts) and
  cached until the reference changes (they cannot change in between), so later epochs skip the
  reference forward pass entirely. The cache is saved in checkpoints: a resumed run reuses the
  uninterrupted run's figures bit for bit (a pass over other batches can differ in the last bits,
  and a sampled game then in a move). At the start of each training epoch the pairs of the epoch's
  training loader (and the datamodule's ``eval_pairs`` when validation runs that epoch) not yet
  cached are scored in a
  no-grad pre-pass of up to ``act_batch_size`` states per forward pass (TRL's
  ``precompute_ref_log_probs``): a training batch holds about four states, and a no-grad pass over
  4 states costs about twice as much per state as one over 64 (quickstart pairs: 21 s against 10 s
  an epoch). The pre-pass scores the whole epoch's pairs even where ``limit_train_batches`` or
  ``max_steps`` will stop the epoch early; a run resumed mid-epoch (Lightning then skips
  ``on_train_epoch_start``) computes the reference in its steps, as before.
- ``rpo_alpha`` adds the chosen answer's per-token negative log-likelihood to the loss (RPO: Pang et
  al., 2024, arXiv:2404.19733; TRL's ``rpo_alpha``). DPO only sees the difference between the two
  answers, so it may lower both: pairs whose answers share their end-of-turn token lower that
  token's probability after every answer, and a free-text policy then stops ending its answers
  (measured on the quickstart: log p(end of turn | "5") went from -1.9 to -19.2). The NLL term keeps
  the chosen answer, its ending included, likely.
- ``reference_free`` drops the reference model: the margin is the policy's own log-probability
  difference, ``log pi(chosen) - log pi(rejected)`` (the reference is taken as uniform over answers),
  which is CPO's preference term (Xu et al., 2024, arXiv:2401.08417; TRL's ``CPOTrainer.cpo_loss``
  with the sigmoid loss); with ``rpo_alpha`` the NLL term makes it CPO's loss, up to the NLL's
  averaging (here per pair, then over pairs; TRL's over the batch's tokens). No reference pass at
  all, so no pre-pass at each epoch's start, and a pair's gradient weight then depends on how the
  policy itself ranks the two answers (a pair it already orders confidently weighs little) instead
  of how far it has moved from the base model. The logged ``rewards_*`` are then beta times the
  policy's log-probabilities.
"""

from __future__ import annotations

import hashlib
import json

import torch

from datamodules.distributed import gather, rank_and_world
from modules.base import PolicyModule
from modules.errors import ConfigError
from modules.losses import DPO_LOSS_TYPES, dpo_loss
from modules.memory import release_freed_memory
from modules.policy import Policy
from modules.sft import sft_step

#: The most fp32 vocabulary logits one reference pre-pass may hold (``DPO.cache_reference``): 256 MB,
#: about 1,300 completion tokens with SmolLM2's 49k vocabulary.
PRE_PASS_LOGITS_BYTES = 256 * 2**20


def _ref_key(pair) -> str:
    """A pair's reference cache key: a digest of its texts, not its id (a judge may flip a pair and
    keep the id); 32 hex characters, so the cache rides in checkpoints at a few dozen bytes a pair."""
    texts = json.dumps([pair.prompt, pair.chosen, pair.rejected], ensure_ascii=False)
    return hashlib.blake2b(texts.encode(), digest_size=16).hexdigest()


class DPO(PolicyModule):
    """DPO on preference pairs.

    Args:
        policy: The LLM policy.
        beta: Strength of the KL-style regularisation towards the reference (the paper's beta).
        loss_type: ``sigmoid`` (DPO), ``ipo`` or ``hinge``.
        label_smoothing: Assumed label-flip probability for conservative DPO (sigmoid only), in [0, 0.5).
        lr: AdamW learning rate.
        weight_decay: AdamW weight decay.
        warmup_steps: Linear warmup steps.
        lr_decay: ``constant``, ``linear`` or ``cosine`` (to 0 over ``max_epochs``; see :class:`PolicyModule`).
        rpo_alpha: Weight of the chosen answer's mean per-token negative log-likelihood added to the
            DPO loss (RPO); 0 is plain DPO. 1.0 is the paper's setting.
        reference_free: No reference model: every reference log-probability is taken as 0 (with
            ``rpo_alpha``, CPO). Skips the reference pre-pass and cache.
    """

    def __init__(
        self,
        policy: Policy,
        beta: float = 0.1,
        loss_type: str = "sigmoid",
        label_smoothing: float = 0.0,
        lr: float = 5e-4,
        weight_decay: float = 0.0,
        warmup_steps: int = 0,
        lr_decay: str = "constant",
        rpo_alpha: float = 0.0,
        reference_free: bool = False,
    ) -> None:
        super().__init__(policy, lr=lr, weight_decay=weight_decay, warmup_steps=warmup_steps, lr_decay=lr_decay)
        if beta <= 0:
            raise ConfigError(f"--model.beta must be > 0, got {beta}")
        if loss_type not in DPO_LOSS_TYPES:
            raise ConfigError(f"--model.loss_type must be one of {DPO_LOSS_TYPES}, got {loss_type!r}")
        if not 0.0 <= label_smoothing < 0.5:
            raise ConfigError(f"--model.label_smoothing must be in [0, 0.5), got {label_smoothing}")
        if rpo_alpha < 0:
            raise ConfigError(f"--model.rpo_alpha must be >= 0, got {rpo_alpha}")
        self.beta, self.loss_type, self.label_smoothing = beta, loss_type, label_smoothing
        self.rpo_alpha = rpo_alpha
        if not isinstance(reference_free, bool):
            raise ConfigError(f"--model.reference_free must be true or false, got {reference_free!r}")
        self.reference_free = reference_free
        self._ref_cache: dict[str, tuple[float, float]] = {}

    def reference_changed(self) -> None:
        """Forget cached reference log-probabilities (called when the reference moves)."""
        self._ref_cache.clear()

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # The cached reference rides along: a resumed run scores its pairs with the figures the
        # uninterrupted run has (a pass over other batches may differ in the last bits) and skips
        # scoring them again.
        super().on_save_checkpoint(checkpoint)
        checkpoint["lightspiel_dpo_reference_cache"] = dict(self._ref_cache)

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        super().on_load_checkpoint(checkpoint)
        saved = {} if self.reference_free else checkpoint.get("lightspiel_dpo_reference_cache", {})
        self._ref_cache = {k: tuple(v) for k, v in saved.items()}

    def _pair_logps(self, batch) -> torch.Tensor:  # [B, 2]
        """Log-probs of each pair's chosen and rejected; each distinct prompt runs once per batch,
        its distinct completions sharing its key/value cache (pairs of one state share a prompt)."""
        prompts: dict[str, int] = {}
        comps: list[dict[str, int]] = []
        index = []
        for p in batch:
            i = prompts.setdefault(p.prompt, len(prompts))
            if i == len(comps):
                comps.append({})
            c = comps[i].setdefault(p.chosen, len(comps[i]))
            r = comps[i].setdefault(p.rejected, len(comps[i]))
            index.append((i, c, r))
        logps = self.policy.completion_logps(
            [self.policy.prompt_ids(text) for text in prompts],
            [[self.policy.completion_ids(text) for text in cs] for cs in comps],
        )  # [P, K]
        rows = torch.tensor([i for i, _, _ in index], device=logps.device)
        cols = torch.tensor([[c, r] for _, c, r in index], device=logps.device)
        return logps[rows[:, None], cols]

    def on_train_epoch_start(self) -> None:
        loader = self.trainer.train_dataloader
        pairs = [p for p in getattr(loader, "dataset", None) or [] if hasattr(p, "chosen")]
        if pairs and self._validates_this_epoch():  # not in an SFT stage, and validation follows
            pairs += list(getattr(self.trainer.datamodule, "eval_pairs", None) or [])
        release_freed_memory()  # the last epoch's activations, before the pre-pass adds its own
        self.cache_reference(pairs)

    def _validates_this_epoch(self) -> bool:
        trainer = self.trainer
        if not trainer.limit_val_batches:
            return False
        every = trainer.check_val_every_n_epoch
        return every is None or (trainer.current_epoch + 1) % every == 0

    def cache_reference(self, pairs) -> None:
        """Reference log-probabilities of every pair not yet cached, in no-grad passes of at most
        ``policy.act_batch_size`` states (a state's pairs stay in one pass) and at most
        :data:`PRE_PASS_LOGITS_BYTES` of fp32 vocabulary logits (long answers, large vocabularies).
        Under DDP each rank scores every ``world``-th state and the ranks exchange their figures.
        Nothing to do when ``reference_free``."""
        if self.reference_free:
            return
        self._reference_from_rollouts(pairs)
        by_prompt: dict[str, list] = {}
        for p in pairs:
            if _ref_key(p) not in self._ref_cache:
                by_prompt.setdefault(p.prompt, []).append(p)
        rank, world = rank_and_world()
        groups = list(by_prompt.values())[rank::world]
        vocab = getattr(self.policy.model.config, "vocab_size", None) or len(self.policy.tokenizer)
        budget = max(1, PRE_PASS_LOGITS_BYTES // (4 * vocab))  # completion tokens a pass
        chunk: list = []
        states = tokens = 0
        for group in groups:
            answers = {text for p in group for text in (p.chosen, p.rejected)}
            width = sum(len(self.policy.completion_ids(text)) for text in answers)
            if chunk and (states == self.policy.act_batch_size or tokens + width > budget):
                self._reference_logps(chunk)
                chunk, states, tokens = [], 0, 0
            chunk += group
            states, tokens = states + 1, tokens + width
        if chunk:
            self._reference_logps(chunk)
        if world > 1:
            mine = {key: self._ref_cache[key] for group in groups for key in map(_ref_key, group)}
            for part in gather(mine):
                self._ref_cache.update(part)

    def _reference_from_rollouts(self, pairs) -> None:
        """Cache the reference log-probabilities the rollouts already computed: where the games the
        pairs come from were played in score mode by the reference itself (its
        :meth:`~modules.Policy.reference_fingerprint` is theirs: a fresh adapter and the bare-base
        reference at iteration 0, or the snapshot of ``IterativeRegeneration(update_reference)``),
        each decision scored every legal and illegal answer in the pass that chose its move
        (``RolloutEngine.play(answer_logps=True)``), and the pre-pass has nothing left to run for
        their pairs. In fp32 the figures are the pre-pass's to 1e-4. In bf16 both carry the
        rounding of bf16 logits, which moves with a batch's makeup: on 48 games of the untrained
        embedded model (a first iteration like the quickstart's) the rollout's figures differ from
        the pre-pass's by 0.12 on average (at most 0.56) in a log-probability, about as much as the
        pre-pass's differ from a training batch's own no-grad pass (0.09; at most 0.56). Logs
        ``train/reference_from_rollouts``, the share of the pairs they served."""
        trainer = self._trainer
        read = getattr(getattr(trainer, "datamodule", None), "reference_answer_logps", None)
        if read is None or not pairs:
            return
        table = read(self.policy.reference_fingerprint())
        served = 0
        for p in pairs:
            answers = table.get(p.prompt)
            if answers is None or p.chosen not in answers or p.rejected not in answers:
                continue
            self._ref_cache.setdefault(_ref_key(p), (answers[p.chosen], answers[p.rejected]))
            served += 1
        self.log("train/reference_from_rollouts", served / len(pairs), batch_size=len(pairs))

    def _reference_logps(self, batch) -> torch.Tensor:  # [B, 2]
        if self.reference_free:
            return torch.zeros((len(batch), 2), device=self.device)
        todo = [p for p in batch if _ref_key(p) not in self._ref_cache]
        if todo:
            with torch.no_grad(), self.policy.evaluating(), self.policy.reference():
                ref = self._pair_logps(todo)
            for p, row in zip(todo, ref.tolist()):
                self._ref_cache[_ref_key(p)] = (row[0], row[1])
        return torch.tensor([self._ref_cache[_ref_key(p)] for p in batch], device=self.device)

    def _step(self, batch, stage: str) -> torch.Tensor:
        if batch and not hasattr(batch[0], "chosen"):  # the datamodule's SFT stage: gold completions
            return sft_step(self, batch, stage)
        ref = self._reference_logps(batch)
        logps = self._pair_logps(batch)
        losses, chosen_rewards, rejected_rewards = dpo_loss(
            logps[:, 0], logps[:, 1], ref[:, 0], ref[:, 1], self.beta, self.loss_type, self.label_smoothing
        )
        loss = losses.mean()
        n = len(batch)
        if self.rpo_alpha:
            lengths = torch.tensor(
                [len(self.policy.completion_ids(p.chosen)) for p in batch], device=logps.device
            )
            nll = -(logps[:, 0] / lengths).mean()  # per token, so long answers do not outweigh short ones
            self.log(f"{stage}/nll_chosen", nll.detach(), batch_size=n)
            loss = loss + self.rpo_alpha * nll
        self.log(f"{stage}/loss", loss, prog_bar=True, batch_size=n)
        self.log(f"{stage}/rewards_chosen", chosen_rewards.mean(), batch_size=n)
        self.log(f"{stage}/rewards_rejected", rejected_rewards.mean(), batch_size=n)
        self.log(f"{stage}/reward_accuracy", (chosen_rewards > rejected_rewards).float().mean(), batch_size=n)
        self.log(f"{stage}/reward_margin", (chosen_rewards - rejected_rewards).mean(), batch_size=n)
        self.log(f"{stage}/logps_chosen", logps[:, 0].detach().mean(), batch_size=n)
        self.log(f"{stage}/logps_rejected", logps[:, 1].detach().mean(), batch_size=n)
        return loss

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch, batch_idx: int) -> None:
        self._step(batch, "val")

"""The DPO module on a tiny model: batching of shared prompts, reference caching, what trains."""

import pytest
import torch
from torch.testing import assert_close

from datamodules.preference import StateBatchSampler
from datamodules.records import PreferencePair
from modules.dpo import DPO, _ref_key


def _pair(pid, prompt, chosen, rejected):
    return PreferencePair(
        pid, prompt, chosen, rejected, 1.0, -1.0, "oracle:minimax", prompt[:8], "tic_tac_toe", 0
    )


BATCH = [
    _pair("a", "board one, X to move", "5", "1"),
    _pair("b", "board one, X to move", "5", "9"),
    _pair("c", "another board, O to move", "3", "7"),
]


def test_pair_logps_match_one_pair_at_a_time(tiny_policy):
    module = DPO(tiny_policy)
    with torch.no_grad():
        together = module._pair_logps(BATCH)
        alone = torch.cat([module._pair_logps([p]) for p in BATCH])
    assert together.shape == (3, 2)
    assert_close(together, alone, rtol=1e-4, atol=1e-4)


def test_training_step_moves_the_adapter_only_and_caches_the_reference(tiny_policy):
    module = DPO(tiny_policy, beta=0.5, lr=1e-2)
    base = {n: p.detach().clone() for n, p in module.named_parameters() if not p.requires_grad}
    adapter = {n: p.detach().clone() for n, p in module.named_parameters() if p.requires_grad}
    opt = module.configure_optimizers()
    for _ in range(3):
        opt.zero_grad()
        loss = module._step(BATCH, "train")
        loss.backward()
        opt.step()
    assert set(module._ref_cache) == {_ref_key(p) for p in BATCH}
    assert all(torch.equal(p, base[n]) for n, p in module.named_parameters() if n in base)
    assert any(not torch.equal(p, adapter[n]) for n, p in module.named_parameters() if n in adapter)
    with torch.no_grad():
        after = module._pair_logps(BATCH)
    ref = module._reference_logps(BATCH)
    # Preferences learned: the chosen-minus-rejected margin grew against the reference.
    assert ((after[:, 0] - after[:, 1]) > (ref[:, 0] - ref[:, 1])).all()


def test_first_step_loss_is_log2(tiny_policy):
    """Adapter B starts at zero, so policy == reference and every DPO loss is log 2."""
    module = DPO(tiny_policy)
    assert_close(module._step(BATCH, "train"), torch.tensor(0.693147), atol=1e-4, rtol=0)


def test_state_batches_keep_a_states_pairs_together():
    pairs = [_pair(str(i), f"board {i % 5}", "5", str(i)) for i in range(20)]
    sampler = StateBatchSampler(pairs, batch_size=6)
    batches = list(sampler)
    assert sorted(i for b in batches for i in b) == list(range(20)) and len(batches) == len(sampler)
    for b in batches:
        keys = {pairs[i].state_key for i in b}
        assert all({j for j in range(20) if pairs[j].state_key == k} <= set(b) for k in keys)


def _train_chosen_logps(model_dir, rpo_alpha: float) -> torch.Tensor:
    from modules.policy import Policy

    torch.manual_seed(0)
    module = DPO(Policy(model=model_dir, lora_r=4, lora_alpha=8), beta=0.1, lr=1e-1, rpo_alpha=rpo_alpha)
    opt = module.configure_optimizers()
    for _ in range(6):
        opt.zero_grad()
        module._step(BATCH, "train").backward()
        opt.step()
    with torch.no_grad():
        return module._pair_logps(BATCH)


def test_rpo_term_keeps_the_chosen_answer_likely(tiny_model_dir):
    """With the NLL term the chosen answers (end-of-turn token included) end more likely than under
    plain DPO from the same start, and the preference is still learned."""
    plain = _train_chosen_logps(tiny_model_dir, 0.0)
    rpo = _train_chosen_logps(tiny_model_dir, 1.0)
    # (a 32-wide tiny model with tied embeddings moves its log-probabilities little, hence the small margin)
    assert (rpo[:, 0] > plain[:, 0]).all() and (rpo[:, 0] - plain[:, 0]).mean() > 0.1, (rpo, plain)
    assert (rpo[:, 0] > rpo[:, 1]).all()


def test_rpo_alpha_must_not_be_negative(tiny_policy):
    import pytest

    from modules.errors import ConfigError

    with pytest.raises(ConfigError, match="rpo_alpha must be >= 0"):
        DPO(tiny_policy, rpo_alpha=-1.0)


def _fit_counting_reference_passes(
    policy, tmp_path, evals, module_options: dict | None = None, **trainer_options
) -> tuple[DPO, list]:
    import lightning as L

    from datamodules import PreferenceDataModule
    from datamodules.records import write_jsonl_atomic

    write_jsonl_atomic(tmp_path / "train.jsonl", BATCH)
    write_jsonl_atomic(tmp_path / "eval.jsonl", evals)
    data = PreferenceDataModule(
        pairs_path=str(tmp_path / "train.jsonl"), eval_pairs_path=str(tmp_path / "eval.jsonl"), batch_size=1
    )
    module = DPO(policy, **(module_options or {}))
    passes: list[int] = []
    original = type(policy).reference

    def counted(self):
        passes.append(len(passes))
        return original(self)

    policy.reference = counted.__get__(policy)
    options = dict(
        max_epochs=2, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, default_root_dir=tmp_path,
        num_sanity_val_steps=0,  # a sanity check would score the held-out pair in its own step first
    )
    trainer = L.Trainer(**{**options, **trainer_options})
    trainer.fit(module, datamodule=data)
    assert trainer.global_step == 2 * 2  # two states an epoch, one batch each
    return module, passes


EVALS = [_pair("e", "a third board, X to move", "2", "8")]


def test_fit_scores_the_reference_once_per_pair_in_a_wide_pre_pass(tiny_policy, tmp_path):
    """In a fit, every training and held-out pair's reference log-probabilities come from one no-grad
    pre-pass at the epoch's start (``act_batch_size`` states a pass), equal to what the training step
    would have computed for its own batch; no later step or epoch runs the reference again."""
    with torch.no_grad():
        expected = {_ref_key(p): DPO(tiny_policy)._pair_logps([p])[0].tolist() for p in BATCH + EVALS}
    module, passes = _fit_counting_reference_passes(tiny_policy, tmp_path, EVALS)
    assert len(passes) == 1  # three states' pairs in one pass (act_batch_size 16), none later
    assert set(module._ref_cache) == set(expected)
    for key, logps in expected.items():
        assert_close(torch.tensor(module._ref_cache[key]), torch.tensor(logps), rtol=1e-4, atol=1e-4)


def test_the_pre_pass_holds_to_its_width_and_logits_budget(tiny_policy, tmp_path, monkeypatch):
    """At most ``act_batch_size`` states a pass, and fewer when their answers' vocabulary logits
    would pass the byte budget (long answers, large vocabularies)."""
    tiny_policy.act_batch_size = 2
    _, passes = _fit_counting_reference_passes(tiny_policy, tmp_path / "width", EVALS)
    assert len(passes) == 2  # three states: two, then one
    import modules.dpo

    tiny_policy.act_batch_size = 16
    vocab = tiny_policy.model.config.vocab_size
    monkeypatch.setattr(modules.dpo, "PRE_PASS_LOGITS_BYTES", 4 * vocab * 5)  # 5 answer tokens a pass
    _, passes = _fit_counting_reference_passes(tiny_policy, tmp_path / "budget", EVALS)
    assert len(passes) == 3  # each state's answers (3 or 2 distinct, 2 tokens each) fill a pass


def test_held_out_pairs_are_scored_only_when_validation_runs(tiny_policy, tmp_path):
    module, passes = _fit_counting_reference_passes(tiny_policy, tmp_path, EVALS, limit_val_batches=0)
    assert set(module._ref_cache) == {_ref_key(p) for p in BATCH} and len(passes) == 1


def test_reference_free_loss_is_trls_cpo_loss(tiny_policy):
    """``reference_free`` is CPO's preference term (TRL's ``CPOTrainer.cpo_loss``, called on the same
    log-probabilities), plus the chosen answers' per-token NLL at ``rpo_alpha``."""
    from types import SimpleNamespace

    from trl.experimental.cpo.cpo_trainer import CPOTrainer

    module = DPO(tiny_policy, beta=0.3, reference_free=True, rpo_alpha=0.0)
    trl = SimpleNamespace(alpha=0.0, beta=0.3, loss_type="sigmoid", label_smoothing=0.0, accelerator=SimpleNamespace(device="cpu"))
    with torch.no_grad():
        logps = module._pair_logps(BATCH)
        losses, _, _ = CPOTrainer.cpo_loss(trl, logps[:, 0], logps[:, 1])
        assert_close(module._step(BATCH, "train"), losses.mean(), rtol=1e-5, atol=1e-6)
        # Not DPO's log 2 at the start: the margin is the policy's own, not a ratio to itself.
        assert abs(float(losses.mean()) - 0.693147) > 1e-3
        # the NLL term adds on top, in proportion to rpo_alpha, and is positive (the chosen answers'
        # log-probabilities are below 0)
        one = DPO(tiny_policy, beta=0.3, reference_free=True, rpo_alpha=1.0)._step(BATCH, "train") - losses.mean()
        with_nll = DPO(tiny_policy, beta=0.3, reference_free=True, rpo_alpha=0.7)._step(BATCH, "train")
        assert one > 0.1
        assert_close(with_nll, losses.mean() + 0.7 * one, rtol=1e-5, atol=1e-6)
        # per answer token, averaged over the pairs (as ``rpo_alpha`` documents)
        tokens = torch.tensor([len(tiny_policy.completion_ids(p.chosen)) for p in BATCH], dtype=torch.float)
        assert_close(one, -(logps[:, 0] / tokens).mean(), rtol=1e-5, atol=1e-6)


def test_a_reference_free_fit_never_runs_the_reference(tiny_policy, tmp_path):
    """No pre-pass, no reference in any step, nothing cached; the preference is still learned."""
    with torch.no_grad():
        before = DPO(tiny_policy)._pair_logps(BATCH)
    module, passes = _fit_counting_reference_passes(
        tiny_policy, tmp_path, EVALS, module_options={"reference_free": True, "lr": 1e-2, "beta": 0.5}
    )
    assert passes == [] and module._ref_cache == {}
    with torch.no_grad():
        after = module._pair_logps(BATCH)
    assert ((after[:, 0] - after[:, 1]) > (before[:, 0] - before[:, 1])).all()


def test_reference_free_refuses_a_moving_reference(tiny_policy, tmp_path):
    import lightning as L

    from callbacks import IterativeRegeneration
    from modules.errors import ConfigError

    with pytest.raises(ConfigError, match="reference_free must be true or false"):
        DPO(tiny_policy, reference_free="yes")
    trainer = L.Trainer(
        max_epochs=1, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
        default_root_dir=tmp_path,
    )
    with pytest.raises(ConfigError, match=r"update_reference.*--model\.init_args\.reference_free"):
        IterativeRegeneration(update_reference=True).setup(trainer, DPO(tiny_policy, reference_free=True), "fit")


def test_a_flipped_pair_keeps_its_id_but_not_its_reference(tiny_policy):
    """A judge may flip a pair (chosen and rejected swapped) and keep its id: the cache is keyed by
    the texts, so the flipped pair's reference log-probs come the right way round."""
    module = DPO(tiny_policy)
    pair = BATCH[0]
    flipped = _pair(pair.pair_id, pair.prompt, pair.rejected, pair.chosen)
    with torch.no_grad():
        first = module._reference_logps([pair])
        second = module._reference_logps([flipped])
    assert_close(second, first.flip(-1))


def test_a_checkpoint_with_adapters_in_other_layers_is_refused_by_name(tiny_model_dir):
    from modules.errors import ConfigError
    from modules.policy import Policy

    def module(layers):
        torch.manual_seed(0)
        return DPO(Policy(model=tiny_model_dir, lora_r=4, lora_alpha=8, lora_layers=layers))

    def checkpoint(m):
        saved = {"state_dict": m.state_dict()}
        m.on_save_checkpoint(saved)
        return saved

    every, top = module(None), module(1)
    top.on_load_checkpoint(checkpoint(module(1)))  # the same options load
    # all-layer adapters into a model with adapters in the last layer only: the lower ones have no place
    with pytest.raises(ConfigError, match=r"adapter weights have no place here .*lora_layers"):
        top.on_load_checkpoint(checkpoint(every))
    with pytest.raises(ConfigError, match=r"trainable weights are missing .*lora_layers"):
        every.on_load_checkpoint(checkpoint(top))


def test_the_cached_reference_rides_in_the_checkpoint_and_is_not_scored_again(tiny_policy, monkeypatch):
    module = DPO(tiny_policy)
    module.cache_reference(BATCH)
    saved = {"state_dict": module.state_dict()}
    module.on_save_checkpoint(saved)
    resumed = DPO(tiny_policy)
    resumed.on_load_checkpoint(saved)
    monkeypatch.setattr(resumed, "_pair_logps", lambda batch: pytest.fail("the reference was scored again"))
    resumed.cache_reference(BATCH)
    # the same figures, bit for bit (a pass over other batches could differ in the last bits)
    assert resumed._reference_logps(BATCH).tolist() == module._reference_logps(BATCH).tolist()
    flipped = _pair("a", BATCH[0].prompt, BATCH[0].rejected, BATCH[0].chosen)
    assert _ref_key(flipped) != _ref_key(BATCH[0])


@pytest.mark.parametrize("decay", ["linear", "cosine"])
def test_lr_decay_falls_to_zero_over_the_epochs(tiny_policy, tmp_path, decay):
    """The rate each optimizer step used, read from the optimizer: from ``lr`` down towards 0 over
    ``max_epochs``, each epoch's batches spread evenly over it (two epochs of two batches here)."""
    import math

    import lightning as L

    class Rates(L.Callback):
        def __init__(self):
            self.seen = []

        def on_before_optimizer_step(self, trainer, pl_module, optimizer):
            self.seen.append(optimizer.param_groups[0]["lr"])

    rates = Rates()
    _fit_counting_reference_passes(
        tiny_policy, tmp_path / "full", EVALS, module_options={"lr": 0.02, "lr_decay": decay}, callbacks=[rates]
    )
    progress = [0.0, 0.25, 0.5, 0.75]  # two epochs of two batches
    shape = (lambda p: 1 - p) if decay == "linear" else (lambda p: 0.5 * (1 + math.cos(math.pi * p)))
    assert rates.seen == pytest.approx([0.02 * shape(p) for p in progress])
    assert rates.seen == sorted(rates.seen, reverse=True) and rates.seen[-1] < 0.01
    # with a warmup, the first steps climb towards the decaying rate
    warm = Rates()
    _fit_counting_reference_passes(
        tiny_policy, tmp_path / "warm", EVALS, module_options={"lr": 0.02, "lr_decay": decay, "warmup_steps": 2},
        callbacks=[warm],
    )
    assert warm.seen == pytest.approx([0.02 * shape(p) * w for p, w in zip(progress, [0.5, 1, 1, 1])])


def test_lr_decay_is_checked_before_the_run_starts(tiny_policy, tmp_path):
    from modules.errors import ConfigError

    with pytest.raises(ConfigError, match="--model.lr_decay must be one of constant, linear, cosine; got 'cosin'; did you mean 'cosine'"):
        DPO(tiny_policy, lr_decay="cosin")
    with pytest.raises(ConfigError, match="--model.lr_decay linear decays over the run's epochs: set --trainer.max_epochs"):
        _fit_counting_reference_passes(
            tiny_policy, tmp_path, EVALS, module_options={"lr_decay": "linear"}, max_epochs=-1, max_steps=4
        )
    DPO(tiny_policy, lr_decay="linear").setup("validate")  # only fitting decays: validate needs no epochs


def test_a_reference_free_run_drops_a_loaded_reference_cache(tiny_policy):
    module = DPO(tiny_policy)
    module.cache_reference(BATCH)
    checkpoint: dict = {"state_dict": module.state_dict()}
    module.on_save_checkpoint(checkpoint)
    assert len(checkpoint["lightspiel_dpo_reference_cache"]) == len(BATCH)
    free = DPO(tiny_policy, reference_free=True)
    free.on_load_checkpoint(checkpoint)
    assert free._ref_cache == {}
    assert free._reference_logps(BATCH).abs().sum() == 0


def _self_play_fit(policy, tmp_path, update_reference: bool, epochs: int = 2):
    """Two iterations of score-mode self-play tic-tac-toe with oracle pairs (legal and illegal
    negatives), recording every pre-pass: ``(module, datamodule, passes, seen)``, where ``passes[e]``
    is the number of pairs epoch ``e``'s pre-pass scored and ``seen[e]`` the epoch's cached reference
    beside what the pre-pass computes for its pairs (:func:`_prepass_figures`)."""
    import lightning as L

    from callbacks import IterativeRegeneration
    from datamodules import PreferenceDataModule

    data = PreferenceDataModule(
        env="lightspiel/TicTacToe-v0", opponents=["self", "random"], num_episodes=4, num_envs=4,
        mode="score", temperature=2.0, strategy="oracle", illegal_negatives=2, max_pairs_per_state=2,
        batch_size=8, run_dir=str(tmp_path / "run"), seed=0,
    )
    module = DPO(policy, lr=5e-2)  # a large rate: one epoch moves the adapter visibly
    passes: list[int] = []
    original = module._reference_logps

    def counted(batch):
        passes[-1] += sum(_ref_key(p) not in module._ref_cache for p in batch)
        return original(batch)

    module._reference_logps = counted
    start = module.on_train_epoch_start

    seen: list[tuple[dict, dict]] = []

    def epoch_start():
        passes.append(0)
        start()
        seen.append((dict(module._ref_cache), _prepass_figures(module, data.train_pairs)))

    module.on_train_epoch_start = epoch_start
    trainer = L.Trainer(
        max_epochs=epochs, accelerator="cpu", logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path,
        num_sanity_val_steps=0, limit_val_batches=0,
        callbacks=[IterativeRegeneration(update_reference=update_reference)],
    )
    trainer.fit(module, datamodule=data)
    return module, data, passes, seen


def _prepass_figures(module, pairs) -> dict:
    """What the reference pre-pass computes for ``pairs``, one state at a time."""
    with torch.no_grad(), module.policy.evaluating(), module.policy.reference():
        return {_ref_key(p): module._pair_logps([p])[0].tolist() for p in pairs}


def test_the_reference_comes_from_the_rollouts_when_the_reference_played_them(tiny_policy, tmp_path):
    """A score-mode rollout scores every legal and illegal answer at each decision; when the policy
    that played is the reference (a fresh adapter at iteration 0), DPO takes those figures and
    its pre-pass scores nothing. They equal the pre-pass's own. The next iteration's games were
    played by the trained policy, not the base reference: its pairs go through the pre-pass, except
    those at states iteration 0's games met, whose base figures are on record."""
    from datamodules.records import Episode, read_jsonl

    _, data, passes, seen = _self_play_fit(tiny_policy, tmp_path, update_reference=False)
    cached, expected = seen[0]
    assert any(key.endswith("illegal-move") for key in {p.strategy for p in data.train_pairs})
    assert passes[0] == 0 and set(expected) <= set(cached)
    for key, logps in expected.items():
        assert_close(torch.tensor(cached[key]), torch.tensor(logps), rtol=1e-4, atol=1e-4)
    met = {t.prompt for e in read_jsonl(tmp_path / "run" / "iter_000" / "episodes.jsonl", Episode) for t in e.turns}
    later = {_ref_key(p): p.prompt in met for p in data.train_pairs if _ref_key(p) not in cached}
    assert passes[1] == sum(not known for known in later.values()) > 0
    assert any(later.values())  # some states of iteration 1 were met at iteration 0
    # The trained policy that played iteration 1 is not the base reference: it recorded nothing.
    second = read_jsonl(tmp_path / "run" / "iter_001" / "episodes.jsonl", Episode)
    assert all(e.policy_fingerprint is None and all(t.answer_logps is None for t in e.turns) for e in second)
    cached, expected = seen[1]
    for key in (k for k, known in later.items() if known):
        assert_close(torch.tensor(cached[key]), torch.tensor(expected[key]), rtol=1e-4, atol=1e-4)


def test_a_moving_reference_is_read_from_every_iterations_rollouts(tiny_policy, tmp_path):
    """With ``update_reference`` the reference is the policy that plays each iteration's games, so
    no epoch's pre-pass scores anything, and the second iteration's figures (from a trained
    adapter) equal the pre-pass's."""
    _, _, passes, seen = _self_play_fit(tiny_policy, tmp_path, update_reference=True)
    assert passes == [0, 0]
    cached, expected = seen[1]
    assert not tiny_policy.reference_fingerprint().endswith("|base")  # a trained snapshot
    for key, logps in expected.items():
        assert_close(torch.tensor(cached[key]), torch.tensor(logps), rtol=1e-4, atol=1e-4)

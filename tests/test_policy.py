"""The policy on a tiny random Llama: shared-prefix log-probs, acting modes, reference, checkpoints."""

import math

import numpy as np
import pytest
import torch
from torch.testing import assert_close

from modules.errors import ConfigError
from modules.policy import Policy

PROMPT = "Tic-tac-toe. You are X.\n 1 | 2 | 3\n 4 | 5 | 6\n 7 | 8 | 9\nReply with one cell number."


def _naive_logp(policy, prompt_ids, completion_ids):
    ids = torch.tensor([prompt_ids + completion_ids])
    logp = policy.model(input_ids=ids).logits[0].float().log_softmax(-1)
    n = len(prompt_ids)
    return sum(logp[n - 1 + i, t] for i, t in enumerate(completion_ids))


@pytest.fixture
def prefix_pass(monkeypatch):
    """The shared-prefix pass wherever prompts share 8 tokens, however few the prompts (the policy
    skips it when it saves fewer than ``_MIN_SHARED_SAVING`` tokens)."""
    import modules.policy as policy_module

    monkeypatch.setattr(policy_module, "_MIN_SHARED_SAVING", 0)


def test_the_shared_prefix_runs_apart_only_where_it_saves_enough(tiny_policy, prefix_pass, monkeypatch):
    import modules.policy as policy_module

    prompts = [tiny_policy.prompt_ids(f"{PROMPT} Move {i}.") for i in range(6)]
    k = tiny_policy._shared_prefix(prompts)
    assert k >= len(tiny_policy.prompt_ids(PROMPT)) - 8  # the template, the system message, the board
    monkeypatch.setattr(policy_module, "_MIN_SHARED_SAVING", 3 * k)
    assert tiny_policy._shared_prefix(prompts[:3]) == 0  # 2 x k tokens saved
    assert tiny_policy._shared_prefix(prompts[:4]) == k  # 3 x k
    assert tiny_policy._shared_prefix(prompts[:1]) == 0


def test_shared_prefix_logps_equal_full_sequence_logps(tiny_policy, prefix_pass):
    """Prompts of different lengths (left padding), candidates of different lengths and counts."""
    prompts = [tiny_policy.prompt_ids(PROMPT), tiny_policy.prompt_ids("short")]
    cands = [
        [tiny_policy.completion_ids(a) for a in ["1", "5", "seven and more"]],
        [tiny_policy.completion_ids(a) for a in ["12"]],
    ]
    with torch.no_grad():
        got = tiny_policy.completion_logps(prompts, cands)
        for b in range(2):
            for j, c in enumerate(cands[b]):
                assert_close(got[b, j], _naive_logp(tiny_policy, prompts[b], c), rtol=1e-4, atol=1e-4)
    assert got[1, 1] == float("-inf") and got[1, 2] == float("-inf")


def test_completion_logps_are_differentiable_through_the_shared_prefix(tiny_policy):
    prompts = [tiny_policy.prompt_ids(PROMPT)]
    cands = [[tiny_policy.completion_ids("5"), tiny_policy.completion_ids("9")]]
    tiny_policy.completion_logps(prompts, cands).sum().backward()
    grads = [p.grad for n, p in tiny_policy.named_parameters() if "lora_B" in n and "layers.0." in n]
    assert grads and all(g is not None and g.abs().sum() > 0 for g in grads)


def test_score_mode_picks_only_legal_actions_and_greedy_is_argmax(tiny_policy):
    obs = [{"prompt": PROMPT, "legal_actions": ["2", "4", "9"]}, {"prompt": "x", "legal_actions": ["7"]}]
    acts = tiny_policy.act(obs, mode="score", greedy=True)
    assert [a.text in o["legal_actions"] for a, o in zip(acts, obs)] == [True, True]
    assert acts[1].index == 0 and acts[1].text == "7"
    with torch.no_grad():
        lp = tiny_policy.completion_logps(
            [tiny_policy.prompt_ids(PROMPT)], [[tiny_policy.completion_ids(a) for a in ["2", "4", "9"]]]
        )
    assert acts[0].index == int(lp[0].argmax())
    assert acts[0].logp == pytest.approx(float(lp[0].max()), abs=1e-4)


def test_generate_mode_returns_text(tiny_policy):
    with torch.no_grad(), tiny_policy.evaluating():  # the decoder itself: ``act`` would run the prompt once
        acts = tiny_policy._generate([{"prompt": PROMPT, "legal_actions": ["1"]}] * 3, True, 1.0)
    # The text is the decoded sampled tokens (what the env parses); greedy answers to one prompt agree.
    decode = tiny_policy.tokenizer.decode
    assert all(a.text == decode(a.token_ids, skip_special_tokens=True).strip() for a in acts)
    assert all(a.index is None for a in acts) and acts[0].token_ids == acts[1].token_ids == acts[2].token_ids


def test_reference_is_the_base_model_and_ignores_adapter_updates(tiny_policy):
    prompts = [tiny_policy.prompt_ids(PROMPT)]
    cands = [[tiny_policy.completion_ids("5")]]
    with torch.no_grad():
        with tiny_policy.reference():
            before = tiny_policy.completion_logps(prompts, cands)
        for name, p in tiny_policy.named_parameters():
            if "lora_B" in name:
                p.add_(0.5)
        moved = tiny_policy.completion_logps(prompts, cands)
        with tiny_policy.reference():
            after = tiny_policy.completion_logps(prompts, cands)
    assert not torch.allclose(moved, before)
    assert_close(after, before)


def test_snapshot_reference_freezes_a_copy_of_the_adapter(tiny_policy):
    prompts = [tiny_policy.prompt_ids(PROMPT)]
    cands = [[tiny_policy.completion_ids("5")]]
    with torch.no_grad():
        for name, p in tiny_policy.named_parameters():
            if "lora_B" in name:
                p.add_(0.5)
        tiny_policy.snapshot_reference()
        snap = tiny_policy.completion_logps(prompts, cands)
        for name, p in tiny_policy.named_parameters():
            if "lora_B" in name and ".default." in name:
                p.add_(0.5)
        with tiny_policy.reference():
            ref = tiny_policy.completion_logps(prompts, cands)
    assert_close(ref, snap)
    trainable = {n for n, p in tiny_policy.named_parameters() if p.requires_grad}
    assert trainable and all(".default." in n for n in trainable)


def test_fingerprints_tell_apart_the_weights_that_score_differently(tiny_policy):
    """A fresh adapter adds nothing: it fingerprints as the bare base, as the adapter-less reference
    does. Any change to the adapter changes the fingerprint, and a snapshot reference carries the
    fingerprint of the weights it copied, not of the adapter trained on after it."""
    base = tiny_policy.fingerprint()
    assert base.endswith("|base") and tiny_policy.reference_fingerprint() == base
    with torch.no_grad():
        name, p = next((n, p) for n, p in tiny_policy.named_parameters() if "lora_B" in n)
        p[0, 0] += 1e-3
    moved = tiny_policy.fingerprint()
    assert moved != base and tiny_policy.reference_fingerprint() == base
    tiny_policy.snapshot_reference()
    assert tiny_policy.reference_fingerprint() == moved
    with torch.no_grad():
        p[0, 0] += 1e-3
    assert tiny_policy.fingerprint() not in (base, moved) and tiny_policy.reference_fingerprint() == moved
    # The same weights prompted in another chat score otherwise.
    tiny_policy.system_prompt = "You play tic-tac-toe."
    assert tiny_policy.reference_fingerprint() != moved


def test_score_mode_scores_extra_answers_without_choosing_them(tiny_policy):
    """``extra_answers`` are scored beside the legal actions (``answer_logps``: the no-grad figures
    at temperature 1) but never chosen, and the choice is the one made without them."""
    legal, extra = ["2", "4", "9"], ["1", "5"]
    plain = tiny_policy.act([{"prompt": PROMPT, "legal_actions": legal}], mode="score", greedy=True)[0]
    assert plain.answer_logps is None
    obs = {"prompt": PROMPT, "legal_actions": legal, "extra_answers": extra}
    acts = tiny_policy.act([obs, obs], mode="score", greedy=True)
    with torch.no_grad():
        lp = tiny_policy.completion_logps(
            [tiny_policy.prompt_ids(PROMPT)], [[tiny_policy.completion_ids(a) for a in legal + extra]]
        )[0]
    for act in acts:
        assert (act.text, act.index) == (plain.text, plain.index)
        assert list(act.answer_logps) == legal + extra
        assert_close(torch.tensor(list(act.answer_logps.values())), lp, rtol=1e-4, atol=1e-4)
    acts[0].answer_logps["2"] = 0.0  # each game's copy is its own
    assert acts[1].answer_logps["2"] != 0.0
    # Sampling hot, from each observation's own generator: the draws spread over the legal actions only.
    sampled = tiny_policy.act(
        [{**obs, "rng": np.random.default_rng(k)} for k in range(24)], mode="score", temperature=100.0
    )
    assert {a.text for a in sampled} == set(legal)


@pytest.mark.parametrize(
    "kwargs, option",
    [
        ({"dtype": "fp8"}, "dtype"),
        ({"lora_r": 0}, "lora_r"),
        ({"temperature": 0}, "temperature"),
        ({"lora_layers": 0}, "lora_layers must be >= 1"),
        ({"lora_layers": 3}, r"lora_layers must be <= 2 \(the model.s decoder layers\), got 3"),
        ({"lora_layers": [1, 2]}, r"lora_layers: layer indices must be in 0\.\.1 .*got \[2\]"),
        ({"lora_layers": []}, "lora_layers must list at least one"),
    ],
)
def test_bad_options_are_named(tiny_model_dir, kwargs, option):
    with pytest.raises(ConfigError, match=option):
        Policy(model=tiny_model_dir, **kwargs)


@pytest.mark.parametrize("layers, adapted", [(1, {1}), ([0], {0}), (None, {0, 1})])
def test_lora_layers_adapt_only_the_named_layers_and_the_others_stay_out_of_the_backward(
    tiny_model_dir, layers, adapted
):
    policy = Policy(model=tiny_model_dir, lora_r=4, lora_alpha=8, lora_layers=layers)
    with_lora = {int(n.split(".layers.")[1].split(".")[0]) for n, _ in policy.named_parameters() if "lora_A" in n}
    assert with_lora == adapted
    # every linear layer of an adapted decoder layer has its adapter, as with "all-linear"
    assert sum("lora_A" in n for n, _ in policy.named_parameters()) == 7 * len(adapted)
    tracked = {}
    for i, layer in enumerate(policy.model.base_model.model.model.layers):
        layer.register_forward_hook(lambda m, a, out, i=i: tracked.__setitem__(i, out[0].requires_grad))
    for n, p in policy.named_parameters():
        if "lora_B" in n:
            p.data.normal_(0, 0.1)
    prompts = [policy.prompt_ids(PROMPT)]
    cands = [[policy.completion_ids("5"), policy.completion_ids("9")]]
    before = policy.completion_logps(prompts, cands)
    before.sum().backward()
    # a layer below every adapter runs outside autograd: nothing kept for a backward pass
    assert {i for i, grad in tracked.items() if grad} == set(range(min(adapted), 2))
    grads = {n: p.grad for n, p in policy.named_parameters() if p.requires_grad}
    assert grads and all(g is not None and g.abs().sum() > 0 for g in grads.values())
    with torch.no_grad():
        for p in policy.parameters():
            if p.grad is not None:
                p.sub_(0.5 * p.grad)
    assert not torch.allclose(policy.completion_logps(prompts, cands), before)


def test_missing_local_model_folder_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        Policy(model=str(tmp_path / "nowhere"))


def test_constrained_decoding_handles_actions_that_prefix_each_other(tiny_policy):
    legal = ["1", "12", "123", "fold", "call"]
    obs = [{"prompt": PROMPT, "legal_actions": legal}] * 16
    acts = tiny_policy.act(obs, mode="constrained")
    assert all(a.text == legal[a.index] for a in acts)
    greedy = tiny_policy.act(obs[:1], mode="constrained", greedy=True)[0]
    ids = tiny_policy.completion_ids(greedy.text)
    with torch.no_grad():
        full = tiny_policy.completion_logps([tiny_policy.prompt_ids(PROMPT)], [[ids]])
    # The reported log-prob is the model's (unconstrained) log-likelihood of the chosen sequence.
    assert greedy.logp == pytest.approx(float(full[0, 0]), abs=1e-3)


@pytest.mark.parametrize(
    "env_id",
    [
        "lightspiel/TicTacToe-v0",
        "lightspiel/ConnectFour-v0",
        "lightspiel/KuhnPoker-v0",
        "lightspiel/LeducPoker-v0",
        "lightspiel/LiarsDice-v0",
        "lightspiel/Breakthrough-v0",
    ],
)
def test_constrained_decoding_never_yields_an_illegal_action(tiny_policy, env_id):
    import gymnasium

    import envs  # noqa: F401

    env = gymnasium.make(env_id, opponent="random", illegal_rule="forfeit", max_turns=15)
    for seed in range(8):
        obs, _ = env.reset(seed=seed)
        done = False
        while not done:
            (act,) = tiny_policy.act([obs], mode="constrained")
            assert act.text in obs["legal_actions"]
            obs, _, term, trunc, info = env.step(act.text)
            assert info["legal"] and info["rule"] is None
            done = term or trunc


def _lora_b_nonzero(policy):
    """LoRA B starts at zero, which makes adapter and base agree; nudge it so they differ."""
    with torch.no_grad():
        for name, p in policy.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.05)


@pytest.mark.parametrize("mode", ["generate", "constrained"])
def test_sampled_token_logps_equal_the_training_pass(tiny_policy, mode):
    """What PPO and GRPO rely on: the per-token log-probabilities recorded while acting are those the
    training pass recomputes (so the first ratio is 1), for answers of different lengths."""
    _lora_b_nonzero(tiny_policy)
    tiny_policy.add_value_head()
    obs = [
        {"prompt": PROMPT, "legal_actions": ("1", "5", "9")},
        {"prompt": "short", "legal_actions": ("12", "3")},
    ]
    torch.manual_seed(3)
    actions = tiny_policy.act(obs, mode=mode)
    assert all(a.token_ids and len(a.token_ids) == len(a.token_logps) for a in actions)
    with torch.no_grad():
        logps, mask, values = tiny_policy.token_logps(
            [tiny_policy.prompt_ids(o["prompt"]) for o in obs], [a.token_ids for a in actions], values=True
        )
    for i, a in enumerate(actions):
        n = len(a.token_ids)
        assert mask[i].sum() == n
        assert_close(logps[i, :n], torch.tensor(a.token_logps), rtol=1e-4, atol=1e-4)
        assert_close(values[i], torch.tensor(a.value), rtol=1e-4, atol=1e-4)
        if mode == "constrained":
            assert a.token_ids == tiny_policy.completion_ids(obs[i]["legal_actions"][a.index])
    # Generated answers stop at the end-of-turn token or at the budget.
    if mode == "generate":
        for a in actions:
            assert a.token_ids[-1] == tiny_policy.eos_id or len(a.token_ids) == tiny_policy.max_new_tokens
            assert tiny_policy.eos_id not in a.token_ids[:-1]


@pytest.mark.parametrize("layout", ["repeated", "distinct"])
def test_batched_rows_have_the_logps_values_and_gradients_of_each_row_alone(tiny_policy, layout, prefix_pass):
    """Rows sharing a prompt (both seats of one position, G games from one start) share its pass, and
    distinct prompts share the pass over their common prefix (chat template, system message); the
    per-token log-probabilities, values and LoRA gradients equal those of each row run alone."""
    _lora_b_nonzero(tiny_policy)
    tiny_policy.add_value_head()
    p, q = tiny_policy.prompt_ids(PROMPT), tiny_policy.prompt_ids("short")
    if layout == "repeated":
        prompts = [p, q, p, p]
    else:
        prompts = [p, q, tiny_policy.prompt_ids(PROMPT + " Now."), tiny_policy.prompt_ids("shorter")]
        assert tiny_policy._shared_prefix(prompts) >= 8  # the chat template and system message
    completions = [tiny_policy.completion_ids(t) for t in ("5", "12 then 3", "I would say 9", "1")]

    def grads():
        return {n: w.grad.clone() for n, w in tiny_policy.named_parameters() if w.grad is not None}

    tiny_policy.zero_grad()
    shared, mask, values = tiny_policy.token_logps(prompts, completions, values=True)
    (shared.sum() + values.sum()).backward()
    shared_grads = grads()
    tiny_policy.zero_grad()
    for i, (prompt, completion) in enumerate(zip(prompts, completions)):
        alone, alone_mask, alone_value = tiny_policy.token_logps([prompt], [completion], values=True)
        n = len(completion)
        assert mask[i].sum() == n and alone_mask.sum() == n
        assert_close(shared[i, :n], alone[0, :n], rtol=1e-5, atol=1e-5)
        assert_close(values[i], alone_value[0], rtol=1e-5, atol=1e-5)
        (alone.sum() + alone_value.sum()).backward()
    alone_grads = grads()
    assert shared_grads.keys() == alone_grads.keys() and any("lora_A" in k for k in shared_grads)
    for name, grad in shared_grads.items():
        assert_close(grad, alone_grads[name], rtol=1e-4, atol=1e-6)


def test_generate_with_repeated_prompts_answers_as_each_prompt_alone(tiny_policy):
    """G samples of one prompt run the prompt once (its cache repeated for its rows): greedy answers,
    their token log-probabilities and the values equal those of each prompt generated alone."""
    _lora_b_nonzero(tiny_policy)
    tiny_policy.add_value_head()
    obs = [{"prompt": p, "legal_actions": ("1",)} for p in (PROMPT, "short", PROMPT, "short", PROMPT)]
    # straight to the decoder: ``act`` would run each distinct greedy prompt once before it gets here
    with torch.no_grad(), tiny_policy.evaluating():
        together = tiny_policy._generate(obs, True, 1.0)
    for o, a in zip(obs, together):
        (alone,) = tiny_policy.act([o], mode="generate", greedy=True)
        assert a.token_ids == alone.token_ids
        assert_close(torch.tensor(a.token_logps), torch.tensor(alone.token_logps), rtol=1e-4, atol=1e-4)
        assert a.value == pytest.approx(alone.value, abs=1e-4)


@pytest.mark.parametrize("impl", ["eager", "gathered"])
def test_candidate_logps_are_exact_under_every_attention_path(tiny_policy, impl):
    """Packed candidates with a 4-D mask (sdpa: boolean; eager: additive) and the per-candidate cache
    copy used for kernels without arbitrary masks give the full-sequence log-probabilities."""
    if impl == "eager":
        tiny_policy.model.set_attn_implementation("eager")
    prompts = [tiny_policy.prompt_ids(PROMPT), tiny_policy.prompt_ids("short")]
    cands = [
        [tiny_policy.completion_ids(a) for a in ["1", "5", "seven and more"]],
        [tiny_policy.completion_ids(a) for a in ["12", "3 4"]],
    ]
    with torch.no_grad():
        if impl == "gathered":
            # the path _continue takes for kernels without arbitrary masks (flash, flex), run directly
            last, cache, pmask = tiny_policy._prefill(prompts)
            sel = torch.tensor([0, 0, 0, 1, 1])
            flat = [c for cs in cands for c in cs]
            width = max(len(c) for c in flat)
            cand = torch.full((5, width), tiny_policy.pad_id)
            cmask = torch.zeros((5, width), dtype=torch.bool)
            for i, c in enumerate(flat):
                cand[i, : len(c)], cmask[i, : len(c)] = torch.tensor(c), True
            first = last[sel].gather(-1, cand[:, :1]) - last[sel].logsumexp(-1, keepdim=True)
            got = tiny_policy._continue_gathered(first, cache, pmask, sel, cand, cmask).sum(-1)
            got = [got[:3], got[3:]]
        else:
            got = tiny_policy.completion_logps(prompts, cands)
        for b in range(2):
            for j, c in enumerate(cands[b]):
                assert_close(got[b][j], _naive_logp(tiny_policy, prompts[b], c), rtol=1e-4, atol=1e-4)


def test_bf16_acting_casts_adapters_down_and_puts_the_fp32_weights_back(tiny_model_dir):
    """A bf16 base acts with its LoRA layers computing in bf16 (no fp32 round trip per layer), then the
    trained fp32 parameters are in place, untouched, with their gradient accumulators: hooks
    registered on those (as DDP's reducer does) still fire in the next backward."""
    torch.manual_seed(0)
    policy = Policy(model=tiny_model_dir, dtype="bfloat16", lora_r=4, lora_alpha=8)
    lora = {n: p for n, p in policy.model.named_parameters() if "lora_" in n}
    with torch.no_grad():
        for p in lora.values():
            p.normal_(0, 0.2)  # a trained adapter: B is no longer zero
    before = {n: (p.data_ptr(), p.detach().clone()) for n, p in lora.items()}
    fired: set[str] = set()
    keep = []
    for n, p in lora.items():
        if ".default." in n:
            acc = p.expand_as(p).grad_fn.next_functions[0][0]  # where DDP hangs its reduction hook
            acc.register_hook(lambda *_, n=n: fired.add(n))
            keep.append(acc)
    seen: list[torch.dtype] = []
    layer = next(m for n, m in policy.model.named_modules() if n.endswith("layers.0.self_attn.q_proj"))
    hook = layer.register_forward_pre_hook(lambda m, args: seen.append(m.lora_A["default"].weight.dtype))
    obs = [{"prompt": PROMPT, "legal_actions": [str(c) for c in range(1, 10)]}] * 2
    fast = policy.act(obs, mode="score", greedy=True)
    hook.remove()
    assert seen and set(seen) == {torch.bfloat16}
    assert dict(policy.model.named_parameters()).keys() >= lora.keys()
    for n, p in dict(policy.model.named_parameters()).items():
        if n in lora:
            assert p is lora[n] and p.dtype == torch.float32, n
            assert p.data_ptr() == before[n][0] and torch.equal(p.detach(), before[n][1]), n
    # the answer is the fp32 adapter's answer, and the log-probs agree to bf16 precision
    with torch.no_grad(), policy.evaluating():
        logps = policy._legal_logps([PROMPT], [obs[0]["legal_actions"]])[0]
    assert fast[0].text == obs[0]["legal_actions"][int(logps.argmax())]
    assert abs(fast[0].logp - float(logps.max())) < 0.1
    # training after acting reaches every trained parameter through its original accumulator
    policy.completion_logps([policy.prompt_ids(PROMPT)], [[policy.completion_ids("5")]]).sum().backward()
    assert fired == {n for n in lora if ".default." in n}
    # with gradients on (training) nothing is swapped
    with torch.enable_grad(), policy.adapters_in_base_dtype():
        assert layer.lora_A["default"].weight.dtype == torch.float32


def test_an_error_while_acting_leaves_the_fp32_adapters_in_place(tiny_model_dir):
    policy = Policy(model=tiny_model_dir, dtype="bfloat16", lora_r=4, lora_alpha=8)
    layer = next(m for n, m in policy.model.named_modules() if n.endswith("layers.0.self_attn.q_proj"))
    original = layer.lora_A["default"]
    with pytest.raises(RuntimeError, match="stop"), torch.no_grad(), policy.adapters_in_base_dtype():
        assert layer.lora_A["default"] is not original
        raise RuntimeError("stop")
    assert layer.lora_A["default"] is original and original.weight.dtype == torch.float32


@pytest.mark.parametrize("mode", ["score", "constrained", "generate"])
def test_identical_observations_run_once_and_answer_as_alone(tiny_policy, mode):
    """Every self-play game opens on the same board: a batch of repeated positions runs each distinct
    one through the model once, and each observation gets the answer it would get alone."""
    other = PROMPT.replace("You are X", "You are O")
    legal = [str(c) for c in range(1, 10)]
    obs = [{"prompt": p, "legal_actions": legal} for p in (PROMPT, PROMPT, other, PROMPT)]
    alone = [tiny_policy.act([o], mode=mode, greedy=True)[0] for o in obs[:3]]
    rows: list[int] = []
    embed = tiny_policy.model.get_input_embeddings()
    hook = embed.register_forward_hook(lambda m, args, out: rows.append(args[0].shape[0]))
    together = tiny_policy.act(obs, mode=mode, greedy=True)
    hook.remove()
    assert [a.text for a in together] == [alone[0].text, alone[0].text, alone[2].text, alone[0].text]
    for a, b in zip(together, [alone[0], alone[0], alone[2], alone[0]]):
        assert a.logp == pytest.approx(b.logp, abs=1e-4)
    assert together[0] is not together[1]  # copies: a caller may annotate one game's action
    assert max(rows) == 2  # no pass runs more rows than there are distinct positions


def test_sampled_score_mode_draws_each_repeated_observation_from_its_own_generator(tiny_policy):
    import numpy as np

    legal = [str(c) for c in range(1, 10)]
    obs = [{"prompt": PROMPT, "legal_actions": legal, "rng": np.random.default_rng(s)} for s in range(12)]
    together = tiny_policy.act(obs, mode="score", temperature=50.0)
    alone = [
        tiny_policy.act([{"prompt": PROMPT, "legal_actions": legal, "rng": np.random.default_rng(s)}],
                        mode="score", temperature=50.0)[0]
        for s in range(12)
    ]
    assert [a.text for a in together] == [a.text for a in alone]
    assert len({a.text for a in together}) > 1  # near-uniform at this temperature: not one shared draw


def test_sampled_generate_mode_draws_each_row_from_its_own_generator(tiny_policy):
    """As in score mode: a game that carries a generator samples the same answer whatever other games
    share its batch (rows finish at different lengths), and different generators sample differently."""
    import numpy as np

    prompts = [PROMPT, "short", PROMPT + " Think.", "x"]
    obs = [{"prompt": prompts[s % 4], "legal_actions": ["1"], "rng": np.random.default_rng(s)} for s in range(8)]
    together = tiny_policy.act(obs, mode="generate", temperature=2.0)
    alone = [
        tiny_policy.act(
            [{"prompt": prompts[s % 4], "legal_actions": ["1"], "rng": np.random.default_rng(s)}],
            mode="generate",
            temperature=2.0,
        )[0]
        for s in range(8)
    ]
    assert [a.token_ids for a in together] == [a.token_ids for a in alone]
    assert len({tuple(a.token_ids) for a in together}) == 8
    # and each game's generator is left where it would be alone (its next turn draws the same)
    states = [o["rng"].bit_generator.state for o in obs]
    for s in range(8):
        rng = np.random.default_rng(s)
        tiny_policy.act([{"prompt": prompts[s % 4], "legal_actions": ["1"], "rng": rng}], mode="generate", temperature=2.0)
        assert rng.bit_generator.state == states[s]


def test_row_sampler_draws_one_uniform_per_unfinished_row_and_hands_decoding_a_one_hot():
    import numpy as np

    from modules.policy import _RowSampler

    eos = 4
    inf = float("inf")
    # Two likely tokens of five at 1 : 1 for row 0, a sure token 3 for row 1, 1 : 3 for row 2.
    scores = torch.tensor([[0.0, 0.0, -inf, -inf, -inf], [-inf, -inf, -inf, 0.0, -inf], [0.0, -inf, math.log(3), -inf, -inf]])
    rngs = [np.random.default_rng(0), np.random.default_rng(1), np.random.default_rng(2)]
    u = [np.random.default_rng(k).random() for k in range(3)]
    sampler = _RowSampler(1.0, rngs, eos)
    prompt = torch.tensor([[1, eos, 2, 3]] * 3)  # an end-of-turn token inside the prompt is no answer's end
    out = sampler(prompt, scores.clone())
    expected = [0 if u[0] < 0.5 else 1, 3, 0 if u[2] < 0.25 else 2]
    assert out.argmax(-1).tolist() == expected
    assert ((out == 0).sum(-1) == 1).all() and torch.isinf(out).sum() == 3 * 4
    # Row 1 answered end-of-turn: the next step draws nothing from its generator.
    before = rngs[1].bit_generator.state
    step = torch.cat([prompt, torch.tensor([[expected[0]], [eos], [expected[2]]])], dim=1)
    sampler(step, scores.clone())
    assert rngs[1].bit_generator.state == before
    assert rngs[0].bit_generator.state != np.random.default_rng(0).bit_generator.state
    # The temperature sharpens: at 0.05, 1 : 3 becomes about 1 : 3**20, so row 2 takes token 2.
    cold = _RowSampler(0.05, [np.random.default_rng(9) for _ in range(3)], eos)(prompt, scores.clone())
    assert cold.argmax(-1).tolist()[1:] == [3, 2]


def test_sampled_generate_mode_follows_the_model_distribution(tiny_policy):
    """The first sampled token of many rows against the exact softmax at the sampling temperature:
    the most likely tokens' frequencies within four binomial standard deviations."""
    import numpy as np

    n = 600
    with torch.no_grad(), tiny_policy.evaluating():
        logits = tiny_policy._prefill([tiny_policy.prompt_ids(PROMPT)])[0][0]
    # The hottest temperature at which a few tokens share most of the mass, none all of it.
    temp = next(
        t for t in (0.2 * 0.9**k for k in range(80))
        if float(torch.softmax(logits / t, -1).topk(3).values.sum()) > 0.6
    )
    top = torch.softmax(logits / temp, -1).topk(3)
    assert float(top.values[0]) < 0.9, "one token takes it all: nothing to compare"
    tiny_policy.max_new_tokens = 1
    obs = [{"prompt": PROMPT, "legal_actions": ["1"], "rng": np.random.default_rng(s)} for s in range(n)]
    firsts = [a.token_ids[0] for a in tiny_policy.act(obs, mode="generate", temperature=temp)]
    for p, token in zip(top.values.tolist(), top.indices.tolist()):
        freq = sum(t == token for t in firsts) / n
        assert abs(freq - p) < 4 * (p * (1 - p) / n) ** 0.5 + 1e-9, (token, freq, p)


def test_a_differentiated_pass_scores_as_the_no_grad_pass(tiny_policy):
    """Passes under autograd take eager attention on the CPU (its backward is faster there), acting
    keeps SDPA: both must give the same log-probabilities, padded rows and packed completions included."""
    _lora_b_nonzero(tiny_policy)
    prompts = [tiny_policy.prompt_ids(PROMPT), tiny_policy.prompt_ids("short")]
    cands = [[tiny_policy.completion_ids(a) for a in ["1", "5", "seven and more"]], [tiny_policy.completion_ids("12")]]
    with torch.no_grad():
        sdpa = tiny_policy.completion_logps(prompts, cands)
    eager = tiny_policy.completion_logps(prompts, cands)
    assert eager.requires_grad
    assert_close(eager.detach(), sdpa, rtol=1e-4, atol=1e-4)
    eager[0, :3].sum().backward()
    grads = [p.grad for n, p in tiny_policy.named_parameters() if "lora_A" in n]
    assert all(torch.isfinite(g).all() for g in grads) and any(g.abs().sum() > 0 for g in grads)


def test_only_differentiated_passes_of_modest_size_take_the_training_kernel(tiny_policy, monkeypatch):
    """Eager attention where the model can switch to it, SDPA's math kernel where it cannot; the
    model's own setting back afterwards, also when the pass raises."""
    import modules.policy as policy_module

    seen = []
    hook = tiny_policy.model.get_input_embeddings().register_forward_pre_hook(
        lambda *_: seen.append((tiny_policy.model.config._attn_implementation, torch.backends.cuda.flash_sdp_enabled()))
    )
    prompts = [tiny_policy.prompt_ids(PROMPT)]
    cands = [[tiny_policy.completion_ids("5"), tiny_policy.completion_ids("nine")]]
    try:
        tiny_policy.completion_logps(prompts, cands)
        with torch.no_grad():
            tiny_policy.completion_logps(prompts, cands)
        with pytest.raises(RuntimeError, match="boom"), tiny_policy.training_attention(prompts, cands):
            raise RuntimeError("boom")
        assert tiny_policy.model.config._attn_implementation == "sdpa"
        base = type(tiny_policy.model.get_base_model())
        monkeypatch.setattr(base, "_can_set_attn_implementation", classmethod(lambda cls: False))
        tiny_policy.completion_logps(prompts, cands)
        monkeypatch.setattr(policy_module, "_MATH_ATTENTION_MAX_SCORES", 10)  # as if the answers were long
        tiny_policy.completion_logps(prompts, cands)
    finally:
        hook.remove()
    assert seen == [("eager", True), ("sdpa", True), ("sdpa", False), ("sdpa", True)]
    assert tiny_policy.model.config._attn_implementation == "sdpa"
    assert torch.backends.cuda.flash_sdp_enabled()  # and the setting is restored

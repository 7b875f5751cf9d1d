"""The fused LoRA layer (modules/lora.py) computes what peft's layer computes, forwards and backwards."""

from __future__ import annotations

import pytest
import torch
from peft.tuners.lora import Linear as PeftLoraLinear

from modules.lora import fuse_lora_layers, unfuse_lora_layers
from modules.policy import Policy

PROMPT = "Tic-tac-toe. You are X.\n 1 | 2 | 3\n 4 | 5 | 6\n 7 | 8 | 9\nReply with one cell number."


def _lora_layers(policy):
    return [m for m in policy.model.modules() if isinstance(m, PeftLoraLinear)]


def _as_peft(policy, on: bool) -> None:
    """Switch every adapted layer between peft's own class and the fused one (same parameters)."""
    (unfuse_lora_layers if on else fuse_lora_layers)(policy.model)


def _trained_like(policy) -> None:
    """Non-zero adapters (peft starts B at zero, which would hide every B-side difference)."""
    torch.manual_seed(1)
    with torch.no_grad():
        for name, p in policy.model.named_parameters():
            if "lora_" in name:
                p.normal_(0.0, 0.2)


def _loss_and_grads(policy):
    policy.model.zero_grad()
    prompts = [policy.prompt_ids(PROMPT), policy.prompt_ids(PROMPT + " ")]
    completions = [[policy.completion_ids(t) for t in ("5", "9", "1")]] * 2
    logps = policy.completion_logps(prompts, completions)
    (logps[:, 0] - 0.5 * logps[:, 1] + 0.25 * logps[:, 2]).sum().backward()
    grads = {n: p.grad.clone() for n, p in policy.model.named_parameters() if p.grad is not None}
    return logps.detach(), grads


@pytest.mark.parametrize("hooked", [False, True])
@pytest.mark.parametrize(
    ("dtype", "lora_alpha", "tol", "compute"),
    [("float32", 8, 1e-5, "base"), ("float32", 6, 1e-5, "base"), ("bfloat16", 6, 2e-2, "float32")],
)
def test_fused_layers_give_peft_values_and_gradients(tiny_model_dir, dtype, lora_alpha, tol, compute, hooked):
    """On an fp32 base, and with ``lora_compute: float32`` on a bf16 one, the fused layers compute
    peft's own arithmetic (bf16 base with the default ``base``: see the test after this one); with a
    hook on every base layer, through the node that keeps the base layer apart."""
    policy = Policy(model=tiny_model_dir, dtype=dtype, lora_r=4, lora_alpha=lora_alpha, lora_compute=compute)
    layers = _lora_layers(policy)
    assert layers and all(type(m).__name__ == "FusedLoraLinear" for m in layers)
    if hooked:
        for layer in layers:
            layer.base_layer.register_forward_hook(lambda *_: None)
    x = torch.randn(1, 2, layers[0].in_features, dtype=layers[0].base_layer.weight.dtype, requires_grad=True)
    node = "_LoraDeltaBackward" if hooked else "_LinearLoraDeltaBackward"
    assert type(layers[0](x).grad_fn).__name__ == node
    _trained_like(policy)
    fused_logps, fused_grads = _loss_and_grads(policy)
    _as_peft(policy, True)
    peft_logps, peft_grads = _loss_and_grads(policy)
    assert fused_grads.keys() == peft_grads.keys()
    assert {n for n in fused_grads if "lora_A" in n} and {n for n in fused_grads if "lora_B" in n}
    torch.testing.assert_close(fused_logps, peft_logps, rtol=tol, atol=tol)
    for name in peft_grads:
        a, b = fused_grads[name], peft_grads[name]
        assert a.dtype == b.dtype == torch.float32, name
        assert (a - b).norm() <= tol * b.norm() + 1e-8, name


def _one_adapted_layer(compute: str | None, bias: bool = False):
    """A bf16 linear layer (64 -> 96, with a bias if asked) with a non-zero fp32 LoRA adapter: fused in
    ``compute`` mode (``"base"``, ``"float32"``), or peft's own layer when None."""
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(64, 96, bias=bias))
    net[0].weight.data.normal_(0.0, 64**-0.5)
    if bias:
        net[0].bias.data.normal_(0.0, 0.5)
    model = get_peft_model(net, LoraConfig(r=8, lora_alpha=16, target_modules=["0"]))
    for name, p in model.named_parameters():
        if "lora_" in name:
            p.data.normal_(0.0, 0.05)
    layer = model.base_model.model[0]
    layer.base_layer.to(torch.bfloat16)
    if compute is not None:
        fuse_lora_layers(model, compute_in_base_dtype=compute == "base")
    return layer


def _errors_against_fp64(compute: str | None, autocast: bool = False, bias: bool = False) -> list[float]:
    """Relative errors of the layer's output and of the input, A and B gradients, against the same
    sums in fp64 from the same bf16 input and weights (a batch of 5 x 8 rows)."""
    layer = _one_adapted_layer(compute, bias)
    torch.manual_seed(1)
    x = torch.randn(5, 8, 64).to(torch.bfloat16).requires_grad_()
    upstream = torch.randn(5, 8, 96)
    a, b = layer.lora_A["default"].weight, layer.lora_B["default"].weight
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        y = layer(x)
    (y.float() * upstream).sum().backward()
    x64 = x.detach().double().requires_grad_()
    a64, b64 = a.detach().double().requires_grad_(), b.detach().double().requires_grad_()
    y64 = x64 @ layer.base_layer.weight.double().t() + 2.0 * (x64 @ a64.t()) @ b64.t()
    if bias:
        y64 = y64 + layer.base_layer.bias.double()
    (y64 * upstream.double()).sum().backward()
    pairs = [(y, y64), (x.grad, x64.grad), (a.grad, a64.grad), (b.grad, b64.grad)]
    return [float((got.double() - want).norm() / want.norm()) for got, want in pairs]


@pytest.mark.parametrize("bias", [False, True])
def test_adapter_arithmetic_in_the_base_dtype_is_as_accurate_as_autocast(bias):
    """``lora_compute: base`` multiplies a bf16 layer's fp32 adapter in bf16, as peft's layer does under
    ``torch.autocast``: output and gradients are as close to fp64 as autocast's (and within bf16's
    precision), a little less close than fp32 arithmetic; the gradients land in fp32. A base layer
    with a bias (Qwen's q/k/v) too."""
    base = _errors_against_fp64("base", bias=bias)
    autocast = _errors_against_fp64(None, autocast=True, bias=bias)
    fp32 = _errors_against_fp64("float32", bias=bias)
    assert all(e < 1e-2 for e in fp32), fp32
    assert all(e < 1e-2 for e in base), base
    assert all(e <= 1.2 * ref for e, ref in zip(base, autocast)), (base, autocast)
    # ...and it is bf16 arithmetic, not fp32's in disguise: the adapter gradients' errors are bf16's
    assert all(e >= 1.3 * ref for e, ref in zip(base[2:], fp32[2:])), (base, fp32)
    layer = _one_adapted_layer("base")
    out = layer(torch.randn(3, 64).to(torch.bfloat16))
    assert out.dtype == torch.bfloat16
    out.float().sum().backward()
    assert layer.lora_A["default"].weight.grad.dtype == torch.float32


@pytest.mark.parametrize(("compute", "expected"), [("base", True), ("float32", False)])
def test_lora_compute_reaches_every_adapted_layer_and_survives_a_round_trip(tiny_model_dir, compute, expected):
    policy = Policy(model=tiny_model_dir, dtype="bfloat16", lora_r=4, lora_compute=compute)
    layers = _lora_layers(policy)
    assert layers and all(layer.compute_in_base_dtype is expected for layer in layers)
    _as_peft(policy, True)
    _as_peft(policy, False)  # fused again without naming the arithmetic: each layer keeps its own
    assert all(type(layer).__name__ == "FusedLoraLinear" for layer in layers)
    assert all(layer.compute_in_base_dtype is expected for layer in layers)


def test_lora_compute_is_checked_by_name(tiny_model_dir):
    from modules.errors import ConfigError

    with pytest.raises(ConfigError, match=r"--model.policy.lora_compute must be one of base, float32; got 'flaot32'; did you mean 'float32'\?"):
        Policy(model=tiny_model_dir, lora_compute="flaot32")


@pytest.fixture
def adapted(tiny_model_dir):
    """A policy with non-zero adapters, a prompt's ids and its logits through the fused layers."""
    policy = Policy(model=tiny_model_dir, lora_r=4, lora_alpha=8)
    _trained_like(policy)
    ids = torch.tensor([policy.prompt_ids(PROMPT)])
    with torch.no_grad():
        return policy, ids, policy.model(input_ids=ids).logits


def test_disabled_and_dropout_layers_take_peft_path(adapted):
    policy, ids, adapted = adapted
    with torch.no_grad(), policy.model.disable_adapter():
        bare = policy.model(input_ids=ids).logits
    assert not torch.allclose(adapted, bare)  # the adapters change the output...
    _as_peft(policy, True)
    with torch.no_grad(), policy.model.disable_adapter():
        torch.testing.assert_close(
            policy.model(input_ids=ids).logits, bare, rtol=0, atol=0
        )  # ...and off is off
    _as_peft(policy, False)
    # dropout above zero is peft's forward, draw for draw
    for layer in _lora_layers(policy):
        layer.lora_dropout["default"] = torch.nn.Dropout(0.3)
    policy.model.train()
    outs = []
    for peft_class in (False, True):
        _as_peft(policy, peft_class)
        torch.manual_seed(7)
        with torch.no_grad():
            outs.append(policy.model(input_ids=ids).logits)
    torch.testing.assert_close(outs[0], outs[1], rtol=0, atol=0)


def test_merged_adapters_are_not_added_twice(adapted):
    policy, ids, adapted = adapted
    with torch.no_grad():
        policy.model.merge_adapter()
        merged = policy.model(input_ids=ids).logits
        policy.model.unmerge_adapter()
    torch.testing.assert_close(merged, adapted, rtol=1e-4, atol=1e-4)


def test_mixed_precision_trains_through_peft_path(tiny_model_dir):
    """Under autocast the adapter's matmuls would come out in bf16 and the fused backward (fp32) would
    not match them: such passes take peft's forward, and train."""
    policy = Policy(model=tiny_model_dir, lora_r=4, lora_alpha=8)
    _trained_like(policy)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logps = policy.completion_logps([policy.prompt_ids(PROMPT)], [[policy.completion_ids("5")]])
    logps.sum().backward()
    grads = [p.grad for n, p in policy.model.named_parameters() if "lora_B" in n]
    assert grads and all(g is not None and g.abs().sum() > 0 for g in grads)


def test_a_fused_model_pickles(tiny_model_dir):
    import io

    policy = Policy(model=tiny_model_dir, lora_r=4, lora_alpha=8)
    buffer = io.BytesIO()
    torch.save(policy.model, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=False)
    assert {type(m).__name__ for m in loaded.modules() if isinstance(m, PeftLoraLinear)} == {
        "FusedLoraLinear"
    }


def test_fused_layers_keep_no_fp32_copy_of_their_inputs_for_backward(tiny_model_dir):
    """peft's layer on a bf16 base keeps each adapted layer's input cast to fp32 for its backward
    pass; the fused layer keeps the input as it came (bf16: half the bytes)."""
    policy = Policy(model=tiny_model_dir, dtype="bfloat16", lora_r=4, lora_alpha=8)
    prompt = [policy.prompt_ids(PROMPT)]
    completions = [[policy.completion_ids("5")]]

    def saved_fp32_bytes() -> int:
        total = []

        def pack(t):
            if t.dtype == torch.float32 and t.dim() >= 2 and t.shape[-1] == policy.model.config.hidden_size:
                total.append(t.numel() * 4)
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            policy.completion_logps(prompt, completions).sum()
        return sum(total)

    fused = saved_fp32_bytes()
    _as_peft(policy, True)
    peft = saved_fp32_bytes()
    assert peft > 0 and fused < peft / 2


def test_a_plain_frozen_linear_joins_its_adapters_node_and_a_hooked_one_does_not(adapted):
    """The base layer folds into the adapter's autograd node (one input gradient, no second branch to
    sum) only where it is a plain frozen ``nn.Linear``: a hook on it must still run."""
    policy, _, _ = adapted
    layer = _lora_layers(policy)[0]
    assert type(layer).__name__ == "FusedLoraLinear"
    x = torch.randn(2, 3, layer.in_features, dtype=layer.base_layer.weight.dtype, requires_grad=True)
    assert type(layer(x).grad_fn).__name__ == "_LinearLoraDeltaBackward"
    seen = []
    handle = layer.base_layer.register_forward_hook(lambda *_: seen.append(1))
    try:
        assert type(layer(x).grad_fn).__name__ == "_LoraDeltaBackward"
    finally:
        handle.remove()
    assert seen == [1]
    # the folded node's output is no view of a tensor made inside it: a caller may add to it in place
    out = layer(x)
    out.mul_(2.0)
    out.sum().backward()
    twice = x.grad.clone()
    x.grad = None
    layer(x).sum().backward()
    torch.testing.assert_close(twice, 2.0 * x.grad, rtol=0, atol=0)  # the in-place product's gradient

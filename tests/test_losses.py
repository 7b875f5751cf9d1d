"""Losses against hand-computed values (arithmetic in each docstring)."""

import math

import pytest
import torch
from torch.testing import assert_close

from modules.losses import dpo_loss, masked_mean


def _logps(*values):
    return [torch.tensor([v]) for v in values]


def test_sigmoid_dpo_hand_values():
    """pi_c=-1, pi_r=-2, ref_c=ref_r=-1.5, beta=0.5: ratios +0.5 and -0.5, h=1, beta*h=0.5.
    loss = -log sigmoid(0.5) = log(1 + e^-0.5) = 0.474077; rewards = beta * ratios = +0.25, -0.25."""
    losses, rc, rr = dpo_loss(*_logps(-1.0, -2.0, -1.5, -1.5), beta=0.5)
    assert_close(losses, torch.tensor([math.log1p(math.exp(-0.5))]))
    assert_close(losses, torch.tensor([0.474077]), atol=1e-6, rtol=0)
    assert_close(rc, torch.tensor([0.25]))
    assert_close(rr, torch.tensor([-0.25]))


def test_sigmoid_label_smoothing_hand_values():
    """eps=0.1, beta*h=0.5: 0.9 * log(1+e^-0.5) + 0.1 * log(1+e^0.5) = 0.9*0.474077 + 0.1*0.974077 = 0.524077."""
    losses, _, _ = dpo_loss(*_logps(-1.0, -2.0, -1.5, -1.5), beta=0.5, label_smoothing=0.1)
    assert_close(losses, torch.tensor([0.524077]), atol=1e-6, rtol=0)


def test_ipo_hand_values():
    """IPO: (h - 1/(2 beta))^2. beta=0.5 -> target 1. h=1 -> 0; h=3 (pi_c=0, pi_r=-2, refs 0,-0... ) -> 4."""
    losses, _, _ = dpo_loss(*_logps(-1.0, -2.0, -1.5, -1.5), beta=0.5, loss_type="ipo")
    assert_close(losses, torch.tensor([0.0]))
    losses, _, _ = dpo_loss(*_logps(0.0, -3.0, 0.0, 0.0), beta=0.5, loss_type="ipo")
    assert_close(losses, torch.tensor([4.0]))


def test_hinge_hand_values():
    """hinge: max(0, 1 - beta h). beta=0.5: h=1 -> 0.5; h=3 -> max(0, -0.5) = 0."""
    losses, _, _ = dpo_loss(*_logps(-1.0, -2.0, -1.5, -1.5), beta=0.5, loss_type="hinge")
    assert_close(losses, torch.tensor([0.5]))
    losses, _, _ = dpo_loss(*_logps(0.0, -3.0, 0.0, 0.0), beta=0.5, loss_type="hinge")
    assert_close(losses, torch.tensor([0.0]))


def test_beta_near_zero_gives_log2():
    """beta -> 0: sigmoid(beta h) -> 1/2, so the loss -> log 2 whatever the margin."""
    losses, _, _ = dpo_loss(*_logps(0.0, -30.0, -1.0, -1.0), beta=1e-9)
    assert_close(losses, torch.tensor([math.log(2.0)]))


def test_equal_policy_and_reference_gives_log2_and_zero_rewards():
    """Policy == reference: every ratio is 0, loss = log 2 per pair, rewards 0 (the first DPO step)."""
    pc, pr = torch.tensor([-3.0, -1.0]), torch.tensor([-2.0, -5.0])
    losses, rc, rr = dpo_loss(pc, pr, pc.clone(), pr.clone(), beta=0.1)
    assert_close(losses, torch.full((2,), math.log(2.0)))
    assert_close(rc, torch.zeros(2))
    assert_close(rr, torch.zeros(2))


def test_gradient_pushes_chosen_up_and_rejected_down():
    pc, pr = torch.tensor([-2.0], requires_grad=True), torch.tensor([-2.0], requires_grad=True)
    loss, _, _ = dpo_loss(pc, pr, torch.tensor([-2.0]), torch.tensor([-2.0]), beta=0.1)
    loss.sum().backward()
    # d/dpc of -log sigmoid(beta h) at h=0 is -beta/2 = -0.05; for pr it is +0.05.
    assert_close(pc.grad, torch.tensor([-0.05]))
    assert_close(pr.grad, torch.tensor([0.05]))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"beta": 0.0}, "beta"),
        ({"loss_type": "kto"}, "loss_type"),
        ({"label_smoothing": 0.5}, "label_smoothing"),
    ],
)
def test_bad_arguments_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        dpo_loss(*_logps(0.0, 0.0, 0.0, 0.0), **kwargs)


def test_masked_mean_hand_values_and_fully_masked_row():
    values = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    mask = torch.tensor([[1, 1, 0], [0, 0, 0]])
    assert_close(masked_mean(values, mask, dim=1), torch.tensor([1.5, 0.0]))
    assert_close(masked_mean(values, mask), torch.tensor(1.5))

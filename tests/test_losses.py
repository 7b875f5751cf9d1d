"""Losses against hand-computed values (arithmetic in each docstring)."""

import math

import pytest
import torch
from torch.testing import assert_close

from modules.losses import dpo_loss, masked_mean


def _logps(*rows):
    """Four tensors (policy chosen, policy rejected, reference chosen, reference rejected), one entry
    per row: batches of several pairs, so a wrong reduction or a mixed-up row shows."""
    return [torch.tensor(column) for column in zip(*rows)]


# Three pairs with margins h = (pi_c - ref_c) - (pi_r - ref_r) of 1, 3 and -2.
ROWS = ((-1.0, -2.0, -1.5, -1.5), (0.0, -3.0, 0.0, 0.0), (-2.0, -1.0, -1.0, -2.0))


def test_sigmoid_dpo_hand_values():
    """beta=0.5, so beta*h = 0.5, 1.5, -1. loss = -log sigmoid(beta h) = log(1 + e^(-beta h)):
    log(1 + e^-0.5) = 0.474077, log(1 + e^-1.5) = 0.201413, log(1 + e^1) = 1.313262.
    Rewards = beta * (pi - ref): chosen 0.25, 0, -0.5; rejected -0.25, -1.5, 0.5."""
    losses, rc, rr = dpo_loss(*_logps(*ROWS), beta=0.5)
    assert_close(losses, torch.tensor([0.474077, 0.201413, 1.313262]), atol=1e-6, rtol=0)
    assert_close(rc, torch.tensor([0.25, 0.0, -0.5]))
    assert_close(rr, torch.tensor([-0.25, -1.5, 0.5]))


def test_sigmoid_label_smoothing_hand_values():
    """eps=0.1: (1 - eps) * log(1 + e^(-beta h)) + eps * log(1 + e^(beta h)).
    Row 1 (beta h = 0.5): 0.9*0.474077 + 0.1*0.974077 = 0.524077.
    Row 3 (beta h = -1): 0.9*1.313262 + 0.1*0.313262 = 1.213262."""
    losses, _, _ = dpo_loss(*_logps(ROWS[0], ROWS[2]), beta=0.5, label_smoothing=0.1)
    assert_close(losses, torch.tensor([0.524077, 1.213262]), atol=1e-6, rtol=0)


def test_ipo_hand_values():
    """IPO: (h - 1/(2 beta))^2 with beta=0.5, so the target margin is 1.
    h = 1 -> 0; h = 3 -> (3 - 1)^2 = 4; h = -2 -> (-2 - 1)^2 = 9."""
    losses, _, _ = dpo_loss(*_logps(*ROWS), beta=0.5, loss_type="ipo")
    assert_close(losses, torch.tensor([0.0, 4.0, 9.0]))


def test_hinge_hand_values():
    """hinge: max(0, 1 - beta h) with beta=0.5: h = 1 -> 0.5; h = 3 -> max(0, -0.5) = 0; h = -2 -> 2."""
    losses, _, _ = dpo_loss(*_logps(*ROWS), beta=0.5, loss_type="hinge")
    assert_close(losses, torch.tensor([0.5, 0.0, 2.0]))


def test_beta_near_zero_gives_log2():
    """beta -> 0: sigmoid(beta h) -> 1/2, so the loss -> log 2 whatever the margin."""
    losses, _, _ = dpo_loss(*_logps((0.0, -30.0, -1.0, -1.0), (-30.0, 0.0, -1.0, -1.0)), beta=1e-9)
    assert_close(losses, torch.full((2,), math.log(2.0)))


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
        dpo_loss(*_logps((0.0, 0.0, 0.0, 0.0)), **kwargs)


def test_masked_mean_hand_values_and_fully_masked_row():
    values = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    mask = torch.tensor([[1, 1, 0], [0, 0, 0]])
    assert_close(masked_mean(values, mask, dim=1), torch.tensor([1.5, 0.0]))
    assert_close(masked_mean(values, mask), torch.tensor(1.5))

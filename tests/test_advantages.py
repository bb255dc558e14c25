import math

import pytest
import torch

from infuser.advantages import (
    BatchStdAdvantage,
    DuGRPOAdvantage,
    GroupStdAdvantage,
    MeanCentredAdvantage,
)

REWARDS = torch.tensor([1.0, 0.0, 0.5, 0.2, 0.2, 0.8])
GROUPS = torch.tensor([0, 0, 0, 1, 1, 1])


def test_dr_grpo_is_mean_centred():
    out = MeanCentredAdvantage()(REWARDS, GROUPS)
    expected = [0.5, -0.5, 0.0, -0.2, -0.2, 0.4]
    assert out.tolist() == pytest.approx(expected, abs=1e-6)


def test_grpo_divides_by_unbiased_group_std():
    out = GroupStdAdvantage(eps=0.0)(REWARDS, GROUPS)
    std0 = 0.5  # unbiased std of 1, 0, .5
    std1 = math.sqrt(((0.2 - 0.4) ** 2 * 2 + 0.4**2) / 2)
    expected = [0.5 / std0, -0.5 / std0, 0.0, -0.2 / std1, -0.2 / std1, 0.4 / std1]
    assert out.tolist() == pytest.approx(expected, rel=1e-5)


def test_dugrpo_adds_mean_nonzero_std():
    out = DuGRPOAdvantage(eps=1e-6)(REWARDS, GROUPS)
    std0, std1 = 0.5, math.sqrt(0.12)
    bar = (std0 + std1) / 2
    expected = [0.5 / (std0 + bar + 1e-6), -0.5 / (std0 + bar + 1e-6), 0.0,
                -0.2 / (std1 + bar + 1e-6), -0.2 / (std1 + bar + 1e-6), 0.4 / (std1 + bar + 1e-6)]
    assert out.tolist() == pytest.approx(expected, rel=1e-5)


def test_dugrpo_ignores_zero_std_groups_in_sigma_bar():
    rewards = torch.tensor([1.0, 0.0, 0.3, 0.3])
    groups = torch.tensor([0, 0, 1, 1])
    out = DuGRPOAdvantage(eps=0.0)(rewards, groups)
    std = math.sqrt(0.5)
    assert out.tolist() == pytest.approx([0.5 / (2 * std), -0.5 / (2 * std), 0.0, 0.0], rel=1e-6)


def test_batch_std_uses_all_centred_rewards():
    out = BatchStdAdvantage(eps=0.0)(REWARDS, GROUPS)
    centred = torch.tensor([0.5, -0.5, 0.0, -0.2, -0.2, 0.4], dtype=torch.float64)
    assert out.tolist() == pytest.approx((centred / centred.std()).tolist(), rel=1e-5)


@pytest.mark.parametrize("estimator", [MeanCentredAdvantage(), GroupStdAdvantage(), BatchStdAdvantage(),
                                       DuGRPOAdvantage()])
def test_edge_cases(estimator):
    # one-question groups: no spread, no advantage
    single = estimator(torch.tensor([0.3, 0.9]), torch.tensor([0, 1]))
    assert single.tolist() == [0.0, 0.0]
    # all-equal rewards / every std zero: zeros, never NaN
    flat = estimator(torch.full((6,), 0.7), GROUPS)
    assert torch.equal(flat, torch.zeros(6))
    # NaN rewards are missing: advantage 0 and excluded from their group's mean
    with_nan = estimator(torch.tensor([1.0, float("nan"), 0.0, float("inf")]), torch.tensor([0, 0, 0, 1]))
    assert torch.isfinite(with_nan).all()
    assert with_nan[1] == 0 and with_nan[3] == 0
    assert with_nan[0] > 0 > with_nan[2]


def test_dr_grpo_nan_excluded_from_mean():
    out = MeanCentredAdvantage()(torch.tensor([1.0, float("nan"), 0.0]), torch.tensor([0, 0, 0]))
    assert out.tolist() == pytest.approx([0.5, 0.0, -0.5])

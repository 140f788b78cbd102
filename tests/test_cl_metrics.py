import math

import pytest

from cl_moo.cl_metrics import cl_summary


def test_summary_by_hand():
    m = [[0.9, 0.1, 0.1], [0.8, 0.95, 0.1], [0.7, 0.9, 0.99]]
    s = cl_summary(m)
    assert s["average_final"] == pytest.approx((0.7 + 0.9 + 0.99) / 3)
    assert s["forgetting_per_task"] == pytest.approx([0.2, 0.05])
    assert s["bwt"] == pytest.approx(((0.7 - 0.9) + (0.9 - 0.95)) / 2)


def test_summary_for_errors_counts_increase_as_forgetting():
    s = cl_summary([[0.01, 9.0], [2.0, 0.02]], higher_is_better=False)
    assert s["average_forgetting"] == pytest.approx(1.99)
    assert s["bwt"] == pytest.approx(-1.99)


def test_summary_skips_entries_that_were_not_evaluated_but_keeps_nan_scores():
    m = [[0.9, None, None], [None, 0.95, None], [0.7, 0.9, 0.99]]
    s = cl_summary(m)
    assert s["average_final"] == pytest.approx((0.7 + 0.9 + 0.99) / 3)
    assert s["forgetting_per_task"] == pytest.approx([0.2, 0.05])  # from the diagonal alone
    assert s["bwt"] == pytest.approx(((0.7 - 0.9) + (0.9 - 0.95)) / 2)
    assert cl_summary(m[:2])["forgetting_measured"] == 0  # after task 1 nothing earlier was evaluated
    with pytest.raises(ValueError, match="evaluates none"):
        cl_summary([[None]])
    nan = float("nan")  # a score that came out NaN is not "not evaluated": the summary says NaN
    assert math.isnan(cl_summary([[0.9, None], [nan, 0.8]])["average_final"])

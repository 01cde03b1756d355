"""PlateauCriterion: stops on a plateau, not while a signal still moves, within [min, cap]."""

import math

import pytest

from porl_ros.core.adaptive import PlateauCriterion


def feed(criterion, values, every=100, name="critic_loss"):
    """Feed one value per check; return the env step at which it said stop (or None)."""
    for i, v in enumerate(values, 1):
        if criterion.observe(i * every, {name: v}):
            return i * every
    return None


def test_stops_on_a_plateau_after_patience():
    c = PlateauCriterion(min_steps=0, max_steps=10**6, window=3, rel_tol=0.05, patience=2)
    # Falls fast for 10 checks, then flat (with tiny noise).
    values = [100 * 0.7 ** i for i in range(10)] + [2.8 + 0.01 * (-1) ** i for i in range(30)]
    stop = feed(c, values)
    assert stop is not None
    # Needs two full windows of plateau before the change is small, then `patience` flat checks.
    assert 10 * 100 < stop <= (10 + 2 * 3 + 2) * 100
    assert c.stopped_at == stop
    assert c.observe(stop + 100, {"critic_loss": 1000.0}), "the decision is final"


def test_does_not_stop_while_decreasing():
    c = PlateauCriterion(min_steps=0, max_steps=10**6, window=3, rel_tol=0.05, patience=2)
    # A steady 3% per check decrease: ~9% per window, above the tolerance.
    assert feed(c, [100 * 0.97 ** i for i in range(200)]) is None
    assert all(v > 0.05 for v in c.last_changes.values())


def test_every_signal_must_be_flat():
    c = PlateauCriterion(min_steps=0, max_steps=10**6, window=2, rel_tol=0.05, patience=1)
    for i in range(1, 20):
        # critic_loss is flat; q_mean still grows by 1 per check (>5% of its level per window)
        assert not c.observe(i * 100, {"critic_loss": 1.0, "q_mean": 10.0 + i * 1.0})
    c2 = PlateauCriterion(min_steps=0, max_steps=10**6, window=2, rel_tol=0.05, patience=1)
    assert feed(c2, [1.0] * 10) == 400  # flat from the first comparable pair of windows


def test_respects_minimum_and_cap():
    c = PlateauCriterion(min_steps=2000, max_steps=10**6, window=2, rel_tol=0.05, patience=1)
    assert feed(c, [1.0] * 100) == 2000  # flat at once, but not before the minimum
    cap = PlateauCriterion(min_steps=0, max_steps=1500, window=2, rel_tol=0.05, patience=1)
    assert feed(cap, [math.exp(0.5 * i) for i in range(100)]) == 1500  # never flat: the cap ends it


def test_near_zero_signal_uses_the_floor():
    c = PlateauCriterion(min_steps=0, max_steps=10**6, window=2, rel_tol=0.05, patience=1, floor=1.0)
    # Noise of +-0.01 around 0 is flat relative to the floor of 1.
    assert feed(c, [0.01 * (-1) ** i for i in range(10)], name="q_gap") is not None


@pytest.mark.parametrize("kwargs, field", [
    ({"min_steps": 10, "max_steps": 5}, "max_steps"),
    ({"window": 0}, "window"),
    ({"patience": 0}, "patience"),
    ({"rel_tol": 0.0}, "rel_tol"),
    ({"floor": float("nan")}, "floor"),
])
def test_bad_settings_name_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        PlateauCriterion(**kwargs)


def test_bad_signals_are_refused():
    c = PlateauCriterion()
    with pytest.raises(ValueError, match="signals"):
        c.observe(100, {})
    with pytest.raises(ValueError, match="q_mean"):
        c.observe(100, {"q_mean": float("inf")})

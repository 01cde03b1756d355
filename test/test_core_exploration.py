"""Epsilon-greedy for continuous actions, epsilon schedules, and the phase schedule."""

import math

import numpy as np
import pytest

from porl_ros.core.exploration import EpsilonGreedy, EpsilonSchedule, StagedEpsilon
from porl_ros.core.phases import PhaseSchedule

LOW = np.array([-2.0, 0.0, 5.0])
HIGH = np.array([1.0, 3.0, 6.0])


@pytest.mark.parametrize("eps", [0.0, 0.1, 0.5, 1.0])
def test_exploration_frequency_matches_epsilon(eps):
    eg = EpsilonGreedy(LOW, HIGH, seed=0)
    policy = np.array([0.5, 1.0, 5.5], dtype=np.float32)
    n = 20000
    flags = []
    for _ in range(n):
        a, explored = eg(policy, eps)
        flags.append(explored)
        if not explored:
            np.testing.assert_array_equal(a, policy)
        assert a.dtype == np.float32
    k = sum(flags)
    sigma = math.sqrt(n * eps * (1 - eps))
    assert abs(k - n * eps) <= max(5 * sigma, 0.5)


def test_random_actions_cover_the_bounds_and_stay_inside():
    eg = EpsilonGreedy(LOW, HIGH, seed=1)
    acts = np.array([eg(np.zeros(3), 1.0)[0] for _ in range(5000)])
    assert np.all(acts >= LOW.astype(np.float32)) and np.all(acts <= HIGH.astype(np.float32))
    span = HIGH - LOW
    assert np.all(acts.min(0) - LOW < 0.01 * span)
    assert np.all(HIGH - acts.max(0) < 0.01 * span)
    # Roughly uniform: mean near the centre, per-dim variance near span^2 / 12.
    np.testing.assert_allclose(acts.mean(0), (LOW + HIGH) / 2, atol=0.05 * span.max())
    np.testing.assert_allclose(acts.var(0), span**2 / 12, rtol=0.1)


def test_same_seed_same_decisions_and_policy_action_clipped():
    e1, e2 = EpsilonGreedy(LOW, HIGH, seed=7), EpsilonGreedy(LOW, HIGH, seed=7)
    a = [e1(np.zeros(3), 0.3) for _ in range(200)]
    b = [e2(np.zeros(3), 0.3) for _ in range(200)]
    assert [x[1] for x in a] == [x[1] for x in b] and any(x[1] for x in a)
    np.testing.assert_array_equal(np.array([x[0] for x in a]), np.array([x[0] for x in b]))
    eg = EpsilonGreedy(LOW, HIGH, seed=0)
    out, explored = eg(np.array([10.0, -10.0, 5.5]), 0.0)
    assert not explored
    np.testing.assert_array_equal(out, np.array([1.0, 0.0, 5.5], dtype=np.float64))
    with pytest.raises(ValueError):
        eg(np.zeros(3), 1.5)
    with pytest.raises(ValueError):
        eg(np.zeros(2), 0.5)


def test_epsilon_schedules():
    const = EpsilonSchedule.constant(0.2)
    assert const.value(0) == const.value(10**6) == 0.2
    lin = EpsilonSchedule.linear(1.0, 0.1, 100)
    assert lin.value(0) == 1.0
    assert math.isclose(lin.value(50), 0.55)
    assert math.isclose(lin.value(100), 0.1) and math.isclose(lin.value(10**6), 0.1)
    with pytest.raises(ValueError, match="start"):
        EpsilonSchedule(1.2)
    staged = StagedEpsilon(EpsilonSchedule.constant(0.3), EpsilonSchedule.linear(0.1, 0.0, 10))
    assert staged.value("presample", 5) == 0.3
    assert math.isclose(staged.value("finetune", 5), 0.05)
    with pytest.raises(ValueError, match="phase"):
        staged.value("warmup", 0)


def test_phase_schedule():
    ps = PhaseSchedule(3)
    assert [ps.phase(i) for i in range(5)] == ["presample"] * 3 + ["finetune"] * 2
    assert [ps.step_in_phase(i) for i in range(5)] == [0, 1, 2, 0, 1]
    assert PhaseSchedule(0).phase(0) == "finetune"
    with pytest.raises(ValueError, match="presample_steps"):
        PhaseSchedule(-1)


def test_exploration_config_names_bad_fields_and_builds_constant_schedules():
    from porl_ros.core.exploration import ExplorationConfig

    for field, value in (("presample_epsilon", 1.5), ("finetune_epsilon_end", -0.1),
                         ("presample_policy_action", "greedy"), ("finetune_epsilon_decay_steps", -1)):
        with pytest.raises(ValueError, match=field):
            ExplorationConfig(**{field: value})
    # An unset end keeps the start constant (setting presample_epsilon alone is enough).
    staged = ExplorationConfig(presample_epsilon=0.5).schedules()
    assert staged.value("presample", 0) == staged.value("presample", 10**6) == 0.5
    decaying = ExplorationConfig(finetune_epsilon=0.2, finetune_epsilon_end=0.0, finetune_epsilon_decay_steps=10)
    assert math.isclose(decaying.schedules().value("finetune", 5), 0.1)


def test_action_chooser_is_the_policy_action_then_epsilon_greedy_per_stage():
    from porl_ros.core.exploration import ActionChooser, ExplorationConfig

    config = ExplorationConfig(presample_epsilon=0.4, finetune_epsilon=0.1, finetune_epsilon_end=0.0,
                               finetune_epsilon_decay_steps=50)
    chooser = ActionChooser(config, LOW, HIGH, seed=3)
    reference = EpsilonGreedy(LOW, HIGH, seed=3)
    asked = []

    def policy(obs, deterministic):
        asked.append(deterministic)
        return np.full(3, 0.5, dtype=np.float32)

    for i, phase in enumerate(["presample"] * 30 + ["finetune"] * 30):
        step = i if phase == "presample" else i - 30
        expected = reference(np.full(3, 0.5, dtype=np.float32), config.schedules().value(phase, step))
        action, explored = chooser.choose(phase, np.zeros(4), policy)
        np.testing.assert_array_equal(action, expected[0])
        assert explored == expected[1]
    assert asked == [True] * 30 + [False] * 30  # mean in pre-sample, a sample in fine-tune
    assert chooser.steps_in_phase == {"presample": 30, "finetune": 30} and chooser.actions == 60
    assert math.isclose(chooser.current_epsilon("finetune"), 0.1 * (1 - 30 / 50))


def _runs(flags_and_actions):
    """Lengths of the runs of identical exploratory actions."""
    runs, previous = [], None
    for action, explored in flags_and_actions:
        assert explored
        if previous is not None and np.array_equal(action, previous):
            runs[-1] += 1
        else:
            runs.append(1)
        previous = action
    return runs


def test_held_exploratory_actions_repeat_for_heavy_tailed_durations():
    eg = EpsilonGreedy(LOW, HIGH, seed=0, hold_max=8)
    runs = _runs([eg(np.zeros(3), 1.0) for _ in range(20000)])
    assert max(runs) == 8 and min(runs) == 1
    counts = np.bincount(runs, minlength=9)[1:]
    expected = (1.0 / np.arange(1, 9) ** 2) / np.sum(1.0 / np.arange(1, 9) ** 2)
    np.testing.assert_allclose(counts / len(runs), expected, atol=0.02)
    # A held action is executed, not the policy's, even where epsilon has dropped to 0.
    eg = EpsilonGreedy(LOW, HIGH, seed=1, hold_max=1000)
    first, _ = eg(np.zeros(3), 1.0)
    if eg.hold_left:
        again, explored = eg(np.zeros(3), 0.0)
        assert explored and np.array_equal(again, first)


def test_hold_max_one_draws_a_fresh_action_every_step():
    eg = EpsilonGreedy(LOW, HIGH, seed=0, hold_max=1)
    runs = _runs([eg(np.zeros(3), 1.0) for _ in range(500)])
    assert runs == [1] * 500
    with pytest.raises(ValueError, match="hold_max"):
        EpsilonGreedy(LOW, HIGH, hold_max=0)


def test_a_new_episode_ends_a_hold():
    from porl_ros.core.exploration import ActionChooser, ExplorationConfig

    chooser = ActionChooser(ExplorationConfig(presample_epsilon=1.0, explore_hold_max=10_000), LOW, HIGH, seed=5)
    policy = lambda obs, deterministic: np.full(3, 0.5, dtype=np.float32)  # noqa: E731
    held, _ = chooser.choose("presample", np.zeros(4), policy, episode=0)
    while chooser.greedy.hold_left < 5:  # find a hold that outlasts its episode
        held, _ = chooser.choose("presample", np.zeros(4), policy, episode=0)
    same, _ = chooser.choose("presample", np.zeros(4), policy, episode=0)
    assert np.array_equal(same, held)
    fresh, explored = chooser.choose("presample", np.zeros(4), policy, episode=1)
    assert explored and not np.array_equal(fresh, held)

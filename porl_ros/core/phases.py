"""Which PORL stage an env-step count is in: presample for the first T steps, then finetune."""

from __future__ import annotations

PRESAMPLE = "presample"
FINETUNE = "finetune"
PHASES = (PRESAMPLE, FINETUNE)
DONE = "done"  # what the learner reports (status, acks) once its run is complete


class PhaseSchedule:
    """Fixed switch after `presample_steps` env steps (T = 0: finetune from the start)."""

    def __init__(self, presample_steps: int) -> None:
        if not isinstance(presample_steps, int) or isinstance(presample_steps, bool) or presample_steps < 0:
            raise ValueError(f"presample_steps must be an int >= 0, got {presample_steps!r}")
        self.presample_steps = presample_steps

    def phase(self, env_step: int) -> str:
        """Phase for the env step with this 0-based index (steps 0..T-1 are presample)."""
        if env_step < 0:
            raise ValueError(f"env_step must be >= 0, got {env_step}")
        return PRESAMPLE if env_step < self.presample_steps else FINETUNE

    def step_in_phase(self, env_step: int) -> int:
        """0-based step count inside the current phase (for per-stage epsilon schedules)."""
        return env_step if self.phase(env_step) == PRESAMPLE else env_step - self.presample_steps

"""How a run ends: its time limits and the exit each outcome leads to (reads only).

- Time limits (``config.time_limits`` of the run's version): the whole study from enrolment and
  each step from when it was shown. The server decides: `deadline` is what the writes check
  (`services`) and what the page counts down to (`state`). Each extension the participant asked
  for (``Participant.time_extensions``, WCAG 2.2.1) adds the limit's own length once more;
  `extensions_left` says how many the limit that ends first still allows.
- Exits (``config.exits``): each outcome (`OUTCOMES`: completed, did not consent, study full,
  failed checks, withdrew, timed out) has its own completion code and redirect; "completed"
  falls back on the study's ``prolific_completion_code`` and ``completion_redirect_url``.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from studyapp.lib.study_config import OUTCOMES, ExitConfig, StudyConfig
from studyapp.studies import versions
from studyapp.studies.models import Participant, Study

__all__ = ["OUTCOMES", "deadline", "exit_of", "exit_info", "extensions_left", "extensions_used"]


def config_of(p: Participant) -> StudyConfig:
    """The parsed configuration of the run's version (parsed once per process and version)."""
    return versions.config_of(p)


def deadline(p: Participant) -> tuple[datetime, str] | None:
    """``(when, "study" | "step")``: the earliest time limit of an active run, or None."""
    limits = config_of(p).time_limits
    if limits is None:
        return None
    found: list[tuple[datetime, str]] = []
    if limits.total_minutes is not None and p.started_at:
        times = 1 + extensions_used(p, "study")
        found.append((p.started_at + timedelta(minutes=limits.total_minutes * times), "study"))
    # ``step_minutes`` is keyed by the kinds' names: a lookup by the stored step's name, not a
    # switch (read here, since the step classes use this module and may not be imported back).
    step = p.plan[p.step_index] if 0 <= p.step_index < len(p.plan) else {}
    minutes = limits.step_minutes.get(step.get("kind", "") if isinstance(step, dict) else "")
    if minutes is not None and p.step_shown_at:
        times = 1 + extensions_used(p, "step")
        found.append((p.step_shown_at + timedelta(minutes=minutes * times), "step"))
    return min(found) if found else None


def extensions_used(p: Participant, scope: str) -> int:
    """How often the run extended the study's limit (``"study"``) or its current step's (``"step"``)."""
    used = p.time_extensions or {}
    if scope == "study":
        return int(used.get("study", 0))
    return int((used.get("steps") or {}).get(str(p.step_index), 0))


def extensions_left(p: Participant, scope: str) -> int:
    """How many more extensions the limit of ``scope`` allows (0 when the limits are essential)."""
    limits = config_of(p).time_limits
    if limits is None or limits.essential:
        return 0
    return max(0, limits.extensions - extensions_used(p, scope))


def exit_of(study: Study, outcome: str) -> ExitConfig:
    """The configured exit of ``outcome`` (an empty one when none is set)."""
    configured = study.parsed_config.exits.get(outcome)  # type: ignore[call-overload]
    if outcome == "completed":
        return ExitConfig(
            code=(configured.code if configured and configured.code else study.prolific_completion_code),
            redirect_url=(configured.redirect_url if configured and configured.redirect_url else study.completion_redirect_url),
            text=configured.text if configured else "",
        )
    return configured or ExitConfig()


def exit_info(study: Study, outcome: str, *, code: str = "") -> dict:
    """What the page shows at an exit: the outcome, the code to paste, and where to go next
    (``{code}`` in the redirect replaced)."""
    chosen = exit_of(study, outcome)
    code = code or chosen.code
    url = chosen.redirect_url.replace("{code}", code) if chosen.redirect_url else ""
    return {"outcome": outcome, "code": code, "redirect_url": url, "text": chosen.text}

"""How a run ends: its time limits and the exit each outcome leads to (reads only).

- Time limits (``config.time_limits`` of the run's version): the whole study from enrolment and
  each step from when it was shown. The server decides: `deadline` is what the writes check
  (`services`) and what the page counts down to (`state`).
- Exits (``config.exits``): each outcome (`OUTCOMES`: completed, did not consent, study full,
  failed checks, withdrew, timed out) has its own completion code and redirect; "completed"
  falls back on the study's ``prolific_completion_code`` and ``completion_redirect_url``.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from studyapp.lib.study_config import OUTCOMES, ExitConfig, StudyConfig
from studyapp.studies import versions
from studyapp.studies.models import Participant, Study

__all__ = ["OUTCOMES", "deadline", "exit_of", "exit_info"]


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
        found.append((p.started_at + timedelta(minutes=limits.total_minutes), "study"))
    kind = p.plan[p.step_index]["kind"] if 0 <= p.step_index < len(p.plan) else ""
    minutes = limits.step_minutes.get(kind)
    if minutes is not None and p.step_shown_at:
        found.append((p.step_shown_at + timedelta(minutes=minutes), "step"))
    return min(found) if found else None


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

"""Checks of what a participant submits: questionnaire answers, check answers and a batch's grouping
(the step classes, `studyapp.studies.steps`, call them for their answers).

Each check returns the cleaned value or raises ``InvalidInput`` with a sentence the participant
can act on, in the study's language (activated by the view: ``studies.i18n``); the services call them inside their transaction, before writing anything.
"""

from __future__ import annotations

from django.utils.translation import gettext, ngettext

from studyapp.studies.errors import InvalidInput
from studyapp.studies.models import Study


def group_rule(rule: object) -> dict | None:
    """A grouping step's rule (its ``groups``): ``{"rule": "exactly" | "at_most" | "free", "n": k}``;
    None for a plan drawn before the rule existed (any number of groups up to ``max_groups``).
    "free": any number from 1 to ``n`` (the most the board allows), and nothing is told."""
    return rule if isinstance(rule, dict) and rule.get("rule") in ("exactly", "at_most", "free") else None


def group_rule_text(rule: dict | None) -> str:
    """The rule in words, as the board shows it and a refusal repeats it (none for "free": the
    number is not told)."""
    if rule is None or rule["rule"] == "free":
        return ""
    n = rule["n"]
    if rule["rule"] == "exactly":
        return ngettext("Make exactly %(n)d group.", "Make exactly %(n)d groups.", n) % {"n": n}
    return ngettext("Make at most %(n)d group.", "Make at most %(n)d groups.", n) % {"n": n}


def validate_grouping(*, study: Study, stimuli: list[int], groups: object, assignment: object) -> dict[int, int]:
    """``{stimulus id: group number}`` covering exactly the batch's images (``stimuli``), in as many
    groups as the step's rule (``groups``: `group_rule`) asks."""
    if not isinstance(assignment, dict) or not assignment:
        raise InvalidInput(gettext("Put every image into a group."))
    rule = group_rule(groups)
    max_groups = max(study.parsed_config.max_groups, rule["n"] if rule else 0)
    cleaned: dict[int, int] = {}
    for key, group in assignment.items():
        try:
            pk = int(key)
        except (TypeError, ValueError):
            raise InvalidInput(gettext("Unknown image %(image)r.") % {"image": key}) from None
        if not isinstance(group, int) or isinstance(group, bool) or not 0 <= group < max_groups:
            raise InvalidInput(gettext("Groups are numbered 0 to %(last)d.") % {"last": max_groups - 1})
        cleaned[pk] = group
    expected = set(stimuli)
    unknown = set(cleaned) - expected
    if unknown:
        raise InvalidInput(
            ngettext("%(n)d image does not belong to this batch.", "%(n)d images do not belong to this batch.", len(unknown))
            % {"n": len(unknown)}
        )
    missing = expected - set(cleaned)
    if missing:
        raise InvalidInput(
            ngettext(
                "%(n)d image is not in a group yet. Put every image into a group.",
                "%(n)d images are not in a group yet. Put every image into a group.",
                len(missing),
            )
            % {"n": len(missing)}
        )
    used = len(set(cleaned.values()))
    if rule is not None and (used > rule["n"] or (rule["rule"] == "exactly" and used != rule["n"])):
        in_groups = ngettext("These images are in %(n)d group.", "These images are in %(n)d groups.", used) % {"n": used}
        raise InvalidInput(f"{group_rule_text(rule)} {in_groups}".strip())
    return cleaned


def answers_object(answers: object) -> dict:
    """The answers of a questions step: an object of question -> value."""
    if not isinstance(answers, dict):
        raise InvalidInput(gettext("Answers must be an object of question -> value."))
    return answers


def browser_key(position: int) -> str:
    """The key the browser gets for the question at ``position`` of a questions step (``q0``...)."""
    return f"q{position}"


def from_browser_keys(questions: list[dict], answers: dict) -> dict:
    """``answers`` keyed by the browser's keys (``q0``...: `browser_key`) keyed by the stored
    keys instead; answers keyed by the stored keys (an API client of the server's own) as they are."""
    by_position = {browser_key(i): q["key"] for i, q in enumerate(questions)}
    if answers and set(answers) <= set(by_position) and not set(answers) & {q["key"] for q in questions}:
        return {by_position[k]: v for k, v in answers.items()}
    return answers


def validate_question_list(questions: list[dict], answers: dict) -> dict:
    keys = {q["key"] for q in questions}
    extra = set(answers) - keys
    if extra:
        raise InvalidInput(gettext("Unexpected answers: %(keys)s.") % {"keys": ", ".join(sorted(extra))})
    cleaned: dict = {}
    for q in questions:
        value = answers.get(q["key"])
        if q["type"] == "text":
            if value in (None, ""):
                if not q.get("optional"):
                    raise InvalidInput(gettext("Please answer: %(question)s") % {"question": q["label"]})
                value = ""
            if not isinstance(value, str) or len(value) > 5000:
                raise InvalidInput(gettext("%(question)s: at most 5000 characters of text.") % {"question": q["label"]})
            cleaned[q["key"]] = value.strip()
        elif q["type"] == "choice":
            if value not in q["options"]:
                raise InvalidInput(gettext("Please choose one option for: %(question)s") % {"question": q["label"]})
            cleaned[q["key"]] = value
        elif q["type"] == "scale":
            first = int(q.get("first_value", 1))
            # ``values``: each option's code, in the order shown (the paper's order may run downward)
            codes = q.get("values") or range(first, first + len(q["options"]))
            if not isinstance(value, int) or isinstance(value, bool) or value not in codes:
                raise InvalidInput(gettext("Please pick one of the options for: %(question)s") % {"question": q["label"]})
            cleaned[q["key"]] = value
        else:  # pragma: no cover - configuration error
            raise InvalidInput(gettext("Unknown question type %(type)r.") % {"type": q["type"]})
    return cleaned


def validate_choices(answers: object, n_options: dict[str, int]) -> dict[str, int]:
    """A quiz's or catch item's answers: exactly the keys of ``n_options``, each an option index."""
    if not isinstance(answers, dict):
        raise InvalidInput(gettext("Answers must be an object of question -> value."))
    if set(answers) != set(n_options):
        raise InvalidInput(gettext("Answer every question, and only these."))
    cleaned = {}
    for key, n in n_options.items():
        value = answers[key]
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < n:
            raise InvalidInput(gettext("Pick one of the %(n)d options.") % {"n": n})
        cleaned[key] = value
    return cleaned

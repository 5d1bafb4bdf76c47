"""Checks of what a participant submits: questionnaire answers and a batch's grouping.

Each check returns the cleaned value or raises ``InvalidInput`` with a sentence the participant
can act on; the services call them inside their transaction, before writing anything.
"""

from __future__ import annotations

from studyapp.studies.errors import InvalidInput
from studyapp.studies.models import Study


def group_rule(step: dict) -> dict | None:
    """The grouping step's rule ``{"rule": "exactly" | "at_most", "n": k}``; None for a plan drawn
    before the rule existed (any number of groups up to ``max_groups``)."""
    rule = step.get("groups")
    return rule if isinstance(rule, dict) and rule.get("rule") in ("exactly", "at_most") else None


def group_rule_text(rule: dict | None) -> str:
    """The rule in words, as the board shows it and a refusal repeats it."""
    if rule is None:
        return ""
    n = rule["n"]
    return f"Make {'exactly' if rule['rule'] == 'exactly' else 'at most'} {n} group{'s' if n != 1 else ''}."


def validate_grouping(*, study: Study, step: dict, assignment: object) -> dict[int, int]:
    """``{stimulus id: group number}`` covering exactly the batch's images, in as many groups as
    the step's rule asks (`group_rule`)."""
    if not isinstance(assignment, dict) or not assignment:
        raise InvalidInput("Put every image into a group.")
    rule = group_rule(step)
    max_groups = max(study.parsed_config.max_groups, rule["n"] if rule else 0)
    cleaned: dict[int, int] = {}
    for key, group in assignment.items():
        try:
            pk = int(key)
        except (TypeError, ValueError):
            raise InvalidInput(f"Unknown image {key!r}.") from None
        if not isinstance(group, int) or isinstance(group, bool) or not 0 <= group < max_groups:
            raise InvalidInput(f"Groups are numbered 0 to {max_groups - 1}.")
        cleaned[pk] = group
    expected = set(step["stimuli"])
    unknown = set(cleaned) - expected
    if unknown:
        raise InvalidInput(f"{len(unknown)} image(s) do not belong to this batch.")
    missing = expected - set(cleaned)
    if missing:
        raise InvalidInput(f"{len(missing)} image(s) are not in a group yet. Put every image into a group.")
    used = len(set(cleaned.values()))
    if rule is not None and (used > rule["n"] or (rule["rule"] == "exactly" and used != rule["n"])):
        raise InvalidInput(f"{group_rule_text(rule)} These images are in {used} group{'s' if used != 1 else ''}.")
    return cleaned


def validate_questions(*, study: Study, step: dict, answers: object) -> dict:
    if not isinstance(answers, dict):
        raise InvalidInput("Answers must be an object of question -> value.")
    if step["kind"] == "questions":
        return _validate_question_list(step["questions"], answers)
    if step["kind"] == "rating":
        value = answers.get(step["key"])
        if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= len(study.rating_scale):
            raise InvalidInput(f"Pick one of the {len(study.rating_scale)} options.")
        if set(answers) != {step["key"]}:
            raise InvalidInput("Unexpected question in the answers.")
        return {step["key"]: value}
    raise InvalidInput("This step takes no answers.")


def _validate_question_list(questions: list[dict], answers: dict) -> dict:
    keys = {q["key"] for q in questions}
    extra = set(answers) - keys
    if extra:
        raise InvalidInput(f"Unexpected answers: {', '.join(sorted(extra))}.")
    cleaned: dict = {}
    for q in questions:
        value = answers.get(q["key"])
        if q["type"] == "text":
            if value in (None, ""):
                if not q.get("optional"):
                    raise InvalidInput(f"Please answer: {q['label']}")
                value = ""
            if not isinstance(value, str) or len(value) > 5000:
                raise InvalidInput(f"{q['label']}: at most 5000 characters of text.")
            cleaned[q["key"]] = value.strip()
        elif q["type"] == "choice":
            if value not in q["options"]:
                raise InvalidInput(f"Please choose one option for: {q['label']}")
            cleaned[q["key"]] = value
        elif q["type"] == "scale":
            first = int(q.get("first_value", 1))
            if not isinstance(value, int) or isinstance(value, bool) or not first <= value < first + len(q["options"]):
                raise InvalidInput(f"Please pick one of the options for: {q['label']}")
            cleaned[q["key"]] = value
        else:  # pragma: no cover - configuration error
            raise InvalidInput(f"Unknown question type {q['type']!r}.")
    return cleaned

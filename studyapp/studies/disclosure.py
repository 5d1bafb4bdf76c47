"""Would a researcher's text tell participants what the data is? (issue 23, item 1)

The dissertation hid the script on purpose ("we do not tell them that the images are numbers
from Kannada script", so that they cannot look it up). The participant pages never show the
slug, the data set or the class ids; what is left is what the researcher writes. The admin
warns (it does not refuse: a study about Kannada script may mean to say so) when a text the
participants read, the title or the slug names a data set, its kind or its classes, or words
like "Kannada" or "MNIST".
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from studyapp.studies.models import Study

#: Words that name the published studies' data or what it is, whatever the study's data sets.
GIVEAWAYS = ("Kannada", "MNIST", "CUB", "CUB-200", "Caltech", "CEL", "digit", "digits", "numeral", "numerals")
_MIN_TOKEN = 4  # a class name's parts shorter than this ("3", "of") give nothing away


def _words_of(name: str) -> set[str]:
    """A data set's or class's name and its alphabetic parts (``059.California_Gull`` → California, Gull)."""
    parts = {p for p in re.split(r"[^A-Za-z]+", name) if len(p) >= _MIN_TOKEN}
    return parts | ({name} if len(name) >= 3 and not name.isdigit() else set())


def giveaway_words(study: Study) -> set[str]:
    """The words that would reveal ``study``'s data: :data:`GIVEAWAYS`, and the names, kinds and
    class names of its data sets (those its stimuli come from) and of ``cub_classes``/``cel_classes``."""
    from studyapp.pipeline.selectors import study_datasets

    words = set(GIVEAWAYS)
    config = study.parsed_config
    for name in [*config.datasets, *(config.cub_classes or []), *(config.cel_classes or [])] if study.design == Study.Design.CLUSTERING else []:
        words |= _words_of(name)
    if study.pk:
        for dataset in study_datasets(study):
            words |= _words_of(dataset.name) | _words_of(dataset.kind)
            for class_name in dataset.class_names or []:
                words |= _words_of(str(class_name))
    return {w for w in words if w}


def participant_texts(study: Study, arm_instructions: Iterable[str] = ()) -> list[tuple[str, str]]:
    """``(where, text)`` for every text a participant reads that the researcher chose, the title and the slug."""
    config = study.parsed_config
    texts = [("the slug", study.slug), ("the title", study.title), ("the consent text", study.consent_text),
             ("the cover story", study.cover_story), ("the completion text", study.completion_text),
             ("the rating question", study.rating_question)]
    texts += [(f"instruction {i + 1}", str(t)) for i, t in enumerate(study.instructions or [])]
    texts += [(f"class name {i + 1}", str(n)) for i, n in enumerate(study.class_names or [])]
    texts += [(f"rating option {i + 1}", str(o)) for i, o in enumerate(study.rating_scale or [])]
    texts += [(f"an arm's instruction ({i + 1})", t) for i, t in enumerate(arm_instructions)]
    texts += [(f"the {stage} stage text", t) for stage, t in config.stage_text.items()]
    if config.comprehension is not None:
        for q in config.comprehension.questions:
            texts += [(f"quiz question {q.key}", " ".join([q.label, *q.options]))]
    for i, item in enumerate(config.catch_trials):
        texts += [(f"catch item {i + 1}", " ".join([item.prompt, *(item.options or [])]))]
    if isinstance(config.demographics, list):
        texts += [(f"question {q.get('key', '?')}", " ".join([str(q.get("label", "")), *map(str, q.get("options", []))]))
                  for q in config.demographics]
    return texts


def disclosure_warnings(study: Study, arm_instructions: Iterable[str] | None = None) -> list[str]:
    """One sentence per researcher-chosen text that names the data (empty: nothing found)."""
    if arm_instructions is None:
        arm_instructions = list(study.arms.values_list("instruction", flat=True)) if study.pk else []
    words = sorted(giveaway_words(study), key=str.lower)
    found = []
    for where, text in participant_texts(study, arm_instructions):
        # A slug's words are joined by "-": read them as words.
        hits = [w for w in words if re.search(rf"(?<![A-Za-z0-9]){re.escape(w)}(?![A-Za-z0-9])", text.replace("_", " "), re.IGNORECASE)]
        if hits:
            named = ", ".join(f"“{w}”" for w in dict.fromkeys(h.lower() for h in hits))
            seen = ("It is not shown to participants, but it names the study in the admin and the exports."
                    if where == "the slug" else "Participants would read it and could look the images up.")
            found.append(f"{where[0].upper()}{where[1:]} names {named}, which tells what the data is. {seen}")
    return found

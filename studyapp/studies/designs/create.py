"""Writes of new studies: a draft from a template, or a copy of a study. Never touches another study.

Every study is made here: the demo's published studies, ``create_study`` and the admin's "New
study from template" and "Copy study". A slug that is taken is refused; nothing is written
unless the whole study (its arms included) is.

Example::

    study = study_from_template(
        template="learning", slug="my-shapes", datasets=[shapes], classes=["curl", "loop"],
        names=["Ternal", "Peat"], classifiers=[cnn], generator=vae,
    )
"""

from __future__ import annotations

from collections.abc import Sequence

from django.core.exceptions import ValidationError
from django.core.validators import validate_slug
from django.db import transaction

from studyapp.pipeline.models import Dataset, TrainedModel
from studyapp.studies.designs import TEMPLATES, TemplateError, neutral_texts, template_design
from studyapp.studies.models import Arm, Study

__all__ = ["study_copy", "study_from_template"]

#: Arm feedback kinds that show a morph, so need a generator.
MORPH_FEEDBACK = (Arm.Feedback.CDEEPEX, Arm.Feedback.XGEMS)
#: Keys the pipeline writes into a study's configuration for its own stimuli; a copy drops them.
PIPELINE_KEYS = ("selection_shortfall",)
#: Study fields that make up a design (copied by :func:`study_copy`).
DESIGN_FIELDS = (
    "title", "language", "design", "consent_text", "cover_story", "instructions", "completion_text",
    "prolific_completion_code", "completion_redirect_url", "classes", "class_names", "n_trials", "correct_mode",
    "stimulus_order", "rating_question", "rating_scale", "dropout_minutes", "config",
)


def _check_slug(slug: str) -> None:
    try:
        validate_slug(slug)
    except ValidationError:
        raise TemplateError(f"'{slug}' is not a valid slug: use letters, numbers, hyphens and underscores.") from None
    if Study.objects.filter(slug=slug).exists():
        raise TemplateError(f"A study with the slug '{slug}' exists already; choose another slug (nothing was changed).")


def _class_id(dataset: Dataset, value: str | int) -> int:
    """A class of ``dataset`` by its name (the folder name) or its number."""
    names = [str(n) for n in dataset.class_names]
    text = str(value).strip()
    if text in names:
        return names.index(text)
    if text.isdigit() and int(text) < len(names):
        return int(text)
    raise TemplateError(f"'{text}' is not a class of the data set '{dataset.name}'; its classes are: {', '.join(names)}.")


def _ready(model: TrainedModel | None, *, what: str, dataset: Dataset, roles: Sequence[str]) -> TrainedModel:
    if model is None:
        raise TemplateError(f"The study needs a {what}.")
    if model.role not in roles:
        raise TemplateError(f"Model #{model.pk} is a {model.get_role_display()}, not a {what}.")
    if model.status != TrainedModel.Status.READY:
        raise TemplateError(f"Model #{model.pk} is not ready (status {model.status}).")
    if model.dataset_id != dataset.pk:
        raise TemplateError(
            f"Model #{model.pk} belongs to the data set '{model.dataset.name}', not to '{dataset.name}'."
        )
    return model


def _learning_choices(
    design: dict, *, datasets: Sequence[Dataset], classes: Sequence[str | int], names: Sequence[str],
    classifiers: Sequence[TrainedModel], generator: TrainedModel | None,
) -> dict:
    if len(datasets) != 1:
        raise TemplateError(f"A learning study uses one data set; {len(datasets)} were given.")
    dataset = datasets[0]
    if len(classes) != 2:
        raise TemplateError(f"A learning study compares two classes; {len(classes)} were given.")
    ids = [_class_id(dataset, c) for c in classes]
    if ids[0] == ids[1]:
        raise TemplateError("The two classes must differ.")
    names = [str(n).strip() for n in names]
    if len(names) != 2 or not all(names) or names[0] == names[1]:
        raise TemplateError("Give two different made-up names for the two classes (shown to participants).")
    if len(classifiers) != 1:
        raise TemplateError(f"A learning study uses one classifier; {len(classifiers)} were given.")
    classifier = _ready(classifiers[0], what="classifier", dataset=dataset, roles=[TrainedModel.Role.CLASSIFIER])
    config = {"classifier_id": classifier.pk}
    if any(arm["feedback"] in MORPH_FEEDBACK for arm in design["arms"]):
        generator_roles = [r for r in TrainedModel.Role.values if r not in (TrainedModel.Role.CLASSIFIER, TrainedModel.Role.XNN)]
        if generator is None:
            raise TemplateError(
                "The template's morph arm (CDeepEx) needs a generator of the data set: train one "
                "(train_models --role vae) or register one, and give its id; or leave that arm out."
            )
        config["generator_id"] = _ready(generator, what="generator (VAE or WGAN)", dataset=dataset, roles=generator_roles).pk
    return {"classes": ids, "class_names": names, "config": config}


def _hive_check(dataset: Dataset) -> None:
    """HIVE's distinction task shows the maps of the classifier's top four classes."""
    if len(dataset.class_names) < 4:
        raise TemplateError(
            f"The data set '{dataset.name}' has {len(dataset.class_names)} classes; HIVE's distinction task shows the maps of "
            "the classifier's top four classes, so its classifier needs at least four."
        )


def _clustering_choices(*, datasets: Sequence[Dataset], classifiers: Sequence[TrainedModel]) -> dict:
    if len(datasets) not in (1, 2):
        raise TemplateError(f"A clustering study uses one or two data sets; {len(datasets)} were given.")
    if len({d.pk for d in datasets}) != len(datasets):
        raise TemplateError("The two data sets must differ.")
    if len(classifiers) != len(datasets):
        raise TemplateError(f"Give one classifier per data set ({len(datasets)}); {len(classifiers)} were given.")
    labels = [d.name for d in datasets]
    models = {
        label: {"classifier_id": _ready(c, what="classifier", dataset=d, roles=[TrainedModel.Role.CLASSIFIER]).pk}
        for label, d, c in zip(labels, datasets, classifiers, strict=True)
    }
    return {"config": {"datasets": labels, "models": models}}


#: The published templates draw heatmaps in jet, as the papers showed (issue 26).
JET_NOTE = (
    "Heatmaps are drawn in jet (config heatmap_colormap), as in the published study; jet is not perceptually "
    "ordered and is hard to read with red-green colour-vision deficiency: set heatmap_colormap to cividis "
    "(the default of new studies) unless the study must show what the paper showed."
)


@transaction.atomic
def study_from_template(
    *, template: str, slug: str | None = None, title: str | None = None, datasets: Sequence[Dataset] = (),
    classes: Sequence[str | int] = (), names: Sequence[str] = (), classifiers: Sequence[TrainedModel] = (),
    generator: TrainedModel | None = None, arms: Sequence[str] | None = None, language: str | None = None,
) -> Study:
    """A draft study of ``template`` (``learning`` or ``clustering``).

    Without ``datasets`` it is the published study as published (its slug by default; the demo
    then chooses its models). With ``datasets`` it runs on them: the two ``classes`` (names or
    numbers of the data set's classes) with the made-up ``names`` and one classifier (learning),
    or one classifier per data set (clustering); ``generator`` for a morph arm; ``arms`` keeps a
    subset of the template's arms by name. Images other than the published ones get the
    template's neutral texts, and the study's notes say so.
    """
    if template not in TEMPLATES:
        raise TemplateError(f"Unknown template {template!r}; the templates are: {', '.join(sorted(TEMPLATES))}.")
    spec = TEMPLATES[template]
    design = template_design(template)
    slug = slug or spec.published_slug
    _check_slug(slug)
    if arms is not None:
        known = [a["name"] for a in design["arms"]]
        unknown = [a for a in arms if a not in known]
        if unknown or not arms:
            raise TemplateError(f"Arms {unknown or '(none)'} are not arms of the template; its arms are: {', '.join(known)}.")
        design["arms"] = [a for a in design["arms"] if a["name"] in arms]
    fields = dict(design["study"])
    config = dict(fields.get("config") or {})
    notes = [f"Template '{template}': {spec.source}."]
    if datasets:
        if spec.design in (Study.Design.LEARNING, Study.Design.SIMULATION, Study.Design.DECISION, Study.Design.BIAS, Study.Design.HIVE):
            chosen = _learning_choices(
                design, datasets=datasets, classes=classes, names=names, classifiers=classifiers, generator=generator,
            )
            if spec.design == Study.Design.BIAS:  # scored against the classifier's planted cue, or the study's declared one
                from studyapp.studies.designs.bias import check_cue

                check_cue(config, classifiers[0])
            if spec.design == Study.Design.HIVE:
                _hive_check(datasets[0])
        else:
            chosen = _clustering_choices(datasets=datasets, classifiers=classifiers)
            for key in ("cub_classes", "cel_classes"):
                config.pop(key, None)
        config.update(chosen.pop("config"))
        fields.update(chosen)
        if any(d.kind not in spec.published_kinds for d in datasets):
            texts = neutral_texts(template)
            arm_texts = texts.pop("arms", {})
            notes.append(texts.pop("notes", ""))
            config.update(texts.pop("config", {}))  # a new study's settings: e.g. a colour-vision-safe map
            # The published notes speak of the published texts and images, which this study does not show.
            config["notes"] = ""
            fields.update({k: v for k, v in texts.items() if k in fields})
            for arm in design["arms"]:
                arm["instruction"] = arm_texts.get(arm["name"], arm["instruction"])
        notes.append("Data: " + ", ".join(f"'{d.name}' ({d.get_kind_display()})" for d in datasets) + ".")
    if config.get("heatmap_colormap") == "jet":
        notes.append(JET_NOTE)
    if title:
        fields["title"] = title
    if language:
        fields["language"] = language
    config["notes"] = " ".join(n for n in [config.get("notes", ""), *notes] if n).strip()
    fields["config"] = config
    fields["slug"] = slug
    study = Study(**fields)
    study.clean()  # the configuration, through its one typed reader
    study.save()
    for position, arm in enumerate(design["arms"]):
        Arm.objects.create(study=study, **{**arm, "position": position})
    study.config_hash = study.compute_config_hash()
    study.save(update_fields=["config_hash"])
    return study


@transaction.atomic
def study_copy(*, study: Study, slug: str, title: str | None = None) -> Study:
    """A new draft with ``study``'s design, texts, arms and configuration, under ``slug``.

    The copy has no participants, stimuli or explanations of its own: select its stimuli and
    precompute as for a new study (it keeps the models ``study`` uses). ``study`` is not changed.
    """
    _check_slug(slug)
    fields = {name: getattr(study, name) for name in DESIGN_FIELDS}
    fields["config"] = {k: v for k, v in dict(study.config).items() if k not in PIPELINE_KEYS}
    fields["title"] = title or f"{study.title} (copy)"
    copy = Study.objects.create(slug=slug, status=Study.Status.DRAFT, **fields)
    for arm in study.arms.order_by("position", "pk"):
        Arm.objects.create(
            study=copy, name=arm.name, feedback=arm.feedback, instruction=arm.instruction, cap=arm.cap, position=arm.position,
        )
    copy.config_hash = copy.compute_config_hash()
    copy.save(update_fields=["config_hash"])
    return copy

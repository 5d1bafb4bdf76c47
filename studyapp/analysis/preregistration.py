"""The pre-registration text of a study (issue 16, item 4): Markdown, ready to paste into a
registry form (OSF, AsPredicted): hypotheses, analysis, stopping rule, exclusion rules and the
configuration hash. Served by `study_preregistration` (below) at
/admin/analysis/study/<pk>/preregistration.md; read-only, it writes nothing.
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.utils import timezone

import studyapp
from stats.analyse import LEARNING, default_pairs, hypothesis, settings_from_config
from stats.sequential import SPENDING_LABELS, SequentialPlan, boundary_rows
from stats.trial_model import ASSUMPTIONS
from studyapp.analysis.access import access_study
from studyapp.lib.study_config import StudyConfigError
from studyapp.studies.models import Study

_RULE_TEXT = {
    "incomplete": "exclude participants who did not complete the study",
    "expected_trials": "a complete run has {v} trials",
    "min_response_ms": "a response faster than {v} ms counts as too fast",
    "max_fast_share": "exclude participants with more than {v:.0%} too-fast responses",
    "attention_checks": "exclude participants who failed an attention check",
    "min_total_seconds": "exclude participants who took less than {v:g} s for the whole study",
    "max_total_seconds": "exclude participants who took more than {v:g} s for the whole study",
}
_SIDES = {"greater": "one-sided", "less": "one-sided", "two-sided": "two-sided"}


def _exclusions(rules: dict) -> list[str]:
    out = []
    for key, value in rules.items():
        if value in (None, False):
            continue
        template = _RULE_TEXT.get(key, f"{key}: {{v}}")
        try:
            out.append(template.format(v=value))
        except (ValueError, TypeError):
            out.append(f"{key}: {value}")
    return out


def preregistration_text(study: Study) -> str:
    """The Markdown pre-registration of `study` under its current configuration."""
    problems: list[str] = []
    try:
        config = study.parsed_config
    except StudyConfigError as exc:
        config = None
        problems.append(f"The configuration does not parse: {exc}")
    arms = list(study.arms.order_by("position", "pk"))
    levels = [a.name for a in arms]
    analysis = config.analysis() if config is not None else {}
    settings, setting_problems = settings_from_config(analysis, design=study.design, levels=levels,
                                                      n_trials=study.n_trials)
    problems += setting_problems
    pairs = settings.pairs or default_pairs(study.design, levels)
    config_hash = study.config_hash or study.compute_config_hash()
    lines = [
        f"# Pre-registration: {study.title}",
        "",
        f"Study `{study.slug}`, configuration hash `{config_hash}`, platform version {studyapp.__version__}; "
        f"generated {timezone.now():%Y-%m-%d %H:%M} UTC. Any change to the texts, arms, trials or analysis "
        "settings changes the hash, and every exported row carries the hash it was collected under.",
        "",
        "## Design",
        "",
    ]
    if study.design == LEARNING:
        lines += [
            f"- Between-subject learning study (dissertation ch. 5): each participant is randomised to one arm and "
            f"answers {study.n_trials} trials, predicting the classifier's answer and seeing the arm's feedback after "
            "each answer.",
            f"- Arms: {', '.join(f'{a.name} ({a.get_feedback_display()}' + (f', cap {a.cap}' if a.cap else '') + ')' for a in arms) or '(none yet)'}.",
            f"- A correct answer is scored against: {study.get_correct_mode_display()}; stimulus order: "
            f"{study.get_stimulus_order_display()}.",
        ]
    elif study.design == Study.Design.SIMULATION:
        lines += [
            f"- Between-subject forward-simulation study (Hase & Bansal 2020): each participant is randomised to one arm, "
            f"predicts the classifier's answer on {study.n_trials} pre-test items (no feedback), sees {study.n_trials} "
            f"learning items (the model's answer and the arm's explanation), then predicts it on {study.n_trials} other "
            "post-test items; test items balanced on model correctness and never used for learning.",
            *([f"- Counterfactual simulation: {_counterfactual(study)} more item(s) per test phase, each the last displayed "
               "frame of a morph of an image used nowhere else, scored against the classifier's answer on that frame."]
              if _counterfactual(study) else []),
            f"- Arms: {', '.join(f'{a.name} ({a.get_feedback_display()})' for a in arms) or '(none yet)'}.",
        ]
    elif study.design == Study.Design.DECISION:
        lines += [
            f"- Between-subject AI-assisted decision study (Nguyen et al. 2021; Schemmer et al. 2023): each participant is "
            f"randomised to one arm and, on {study.n_trials} items balanced on model correctness, answers alone, then "
            "sees the classifier's answer with the arm's explanation and answers again; scored against the true class.",
            f"- Arms: {', '.join(f'{a.name} ({a.get_feedback_display()})' for a in arms) or '(none yet)'}.",
        ]
    elif study.design == Study.Design.BIAS:  # issue 25, protocol 4
        bias = config.bias if config is not None else None
        lines += [
            "- Between-subject bias-discovery study (dissertation §3.2.2; Sixt et al. 2022): each participant is randomised "
            f"to one arm, sees {bias.n_explained if bias else 'n'} of the classifier's predictions with the arm's explanation, "
            f"then marks on {bias.n_marks if bias else 'n'} images the region the classifier relies on and chooses among "
            f"{len(bias.candidates) if bias else 'the'} candidate cues (order shuffled per run). The classifier was trained "
            "with a planted cue; answers are scored against it.",
            f"- Arms: {', '.join(f'{a.name} ({a.get_feedback_display()})' for a in arms) or '(none yet)'}.",
        ]
    elif study.design == Study.Design.HIVE:  # issue 25, protocol 3
        lines += [
            f"- Between-subject HIVE study (Kim et al., ECCV 2022): each participant is randomised to one arm, rates "
            f"{study.n_trials} agreement items (the image, the model's answer and the arm's explanation; confidence that "
            "the answer is correct on HIVE's 4-point scale), balanced on model correctness, then picks the model's answer "
            f"among the maps of its top four classes on {study.n_trials} distinction items (positions drawn per run; a "
            "control arm takes the agreement items without explanation and no distinction items).",
            f"- Arms: {', '.join(f'{a.name} ({a.get_feedback_display()})' for a in arms) or '(none yet)'}.",
        ]
    else:
        lines += [f"- Within-subject clustering study (XNN paper §4.1), stages {', '.join(levels) or '(default)'}."]
    lines += ["", "## Hypotheses", ""]
    unit = "stage" if study.design == Study.Design.CLUSTERING else "arm"
    for p in pairs:
        lines.append(f"- H1: {hypothesis(p)} ({_SIDES[p[2]]}): the {unit} {p[0]} scores "
                     f"{'higher than' if p[2] == 'greater' else 'lower than' if p[2] == 'less' else 'differently from'} {p[1]}.")
    lines += ["", "## Analysis", ""]
    if study.design == LEARNING:
        lines += [
            f"- Primary: Welch t-tests on the number of correct answers after {settings.n_trials or study.n_trials} "
            f"trials, one per hypothesis, at α = {settings.alpha:g}, Holm-adjusted across the family; "
            "effect sizes as Hedges' g with 95% confidence intervals (noncentral t).",
            "- Secondary (exploratory, reported beside the primary tests): a trial-level model, "
            "correct ~ trial + arm:trial (a learning rate per arm, common start), fitted by GEE with a logit link, "
            "exchangeable working correlation within participants and robust standard errors (statsmodels); "
            "the planned comparisons as learning-rate contrasts with 95% intervals. A GLMM (random participant "
            "intercepts and slopes, random stimulus effects; statsmodels BinomialBayesMixedGLM) as a check.",
            "- The trial-level model assumes: " + "; ".join(ASSUMPTIONS) + ".",
        ]
    elif study.design == Study.Design.SIMULATION:
        lines += [
            "- Primary (stats.protocols.simulation): per arm, simulation accuracy pre and post and the change; the "
            "explanation effect (an arm's change minus the control arm's, Welch) and Colin et al.'s utility (post "
            "accuracy relative to the control's, delta method), with 95% intervals, for all test items and split by "
            "whether the model was right" + ("; the counterfactual items are analysed apart, the same way." if _counterfactual(study) else "."),
        ]
    elif study.design == Study.Design.DECISION:
        lines += [
            "- Primary (stats.protocols.reliance): per arm, RAIR (relative AI reliance) and RSR (relative self-reliance, "
            "Schemmer et al. 2023), per participant then averaged, each arm against the control arm by Welch's test, with "
            "95% intervals; also human-alone, AI-alone and team accuracy and over-/under-reliance, for all items and split "
            "by whether the model was right.",
        ]
    elif study.design == Study.Design.BIAS:
        lines += [
            "- Primary (stats.protocols.bias): per arm, the share of participants whose cue choice is the planted cue "
            "(Wilson interval); each arm against the control arm as a difference of proportions (Newcombe interval, score "
            "test). Secondary: localisation error, the distance between the centres of the marked region and the planted "
            "cue's box (pixels; per participant the mean over their marks, arms compared with Welch's test), IoU beside it.",
        ]
    elif study.design == Study.Design.HIVE:
        lines += [
            "- Primary (stats.protocols.hive): per arm, mean confidence on model-correct and on model-wrong items and "
            "the paired difference (participant means, t interval); distinction accuracy against chance 1/4 with a "
            "one-sided exact binomial test and a Wilson interval, and the participant-level t-test against chance.",
        ]
    else:
        lines += [f"- Paired tests of cluster purity between stages, at α = {settings.alpha:g}."]
    lines += ["", "## Sample size and stopping rule", ""]
    plan = None
    if config is not None and config.sequential is not None:
        try:
            plan = SequentialPlan.from_config(config.sequential.model_dump())
        except (ValueError, KeyError) as exc:
            problems.append(f"config.sequential: {exc}")
    if plan is None:
        caps = [a.cap for a in arms if a.cap]
        lines.append("- Fixed sample size, no interim analysis" + (f": at most {max(caps)} completed participants per arm."
                                                                   if caps else "."))
    else:
        statistic = "the Welch test on the totals" if plan.statistic == "welch" else "the trial-level model's learning-rate contrast"
        lines += [
            f"- Group-sequential design for the planned comparison {hypothesis(plan.comparison)} "
            f"({_SIDES[plan.comparison[2]]}), tested with {statistic}.",
            f"- Looks after every {plan.look_every} completed (and not excluded) participants per arm, at most "
            f"{plan.max_n_per_arm} per arm ({len(plan.look_sizes)} looks).",
            f"- Efficacy boundaries by {SPENDING_LABELS[plan.spending]} alpha spending at α = {plan.alpha:g} "
            "(Lan & DeMets 1983).",
            "- Futility: " + (f"stop at an interim look when z < {plan.futility_z:g} (non-binding: the efficacy "
                              "boundaries ignore it, so the type-I error stays at most α)."
                              if plan.futility_z is not None and plan.sides == 1 else "none."),
            "- After stopping: the stage-wise adjusted p-value and the repeated confidence interval are reported.",
            "",
            "| Look | n per arm | Efficacy z ≥ | Nominal p | α spent (cumulative) |",
            "|---:|---:|---:|---:|---:|",
        ]
        for b in boundary_rows(plan):
            lines.append(f"| {b['look']} | {b['n_per_arm']} | {b['efficacy_z']:.3f} | {b['nominal_p']:.5f} | {b['alpha_spent']:.5f} |")
    lines += ["", "## Exclusion rules", ""]
    rules = _exclusions(settings.exclusions)
    lines += [f"- {r}" for r in rules] or ["- None: every participant's data are analysed."]
    lines += ["", "## Configuration", "", f"- Configuration hash: `{config_hash}`", f"- Software version: {studyapp.__version__}"]
    if problems:
        lines += ["", "## Problems to fix before registering", ""] + [f"- {p}" for p in problems]
    return "\n".join(lines) + "\n"


def study_preregistration(request: HttpRequest, pk: int) -> HttpResponse:
    """The download (staff who may view the study)."""
    study = access_study(request, pk)
    response = HttpResponse(preregistration_text(study), content_type="text/markdown; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{study.slug}-preregistration-{(study.config_hash or "")[:8]}.md"'
    return response


def _counterfactual(study: Study) -> int:
    """The study's counterfactual items per test phase (``config.counterfactual_items``; 0 if unset or not a count)."""
    return max(study.parsed_config.counterfactual_items, 0)

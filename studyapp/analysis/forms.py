"""The forms of the analysis pages: planned comparisons and alpha, the power calculator, and the
upload of a results CSV."""

from __future__ import annotations

from django import forms
from django.forms import formset_factory

from studyapp.analysis import importing
from studyapp.analysis.models import ImportedResults
from studyapp.studies.models import Study


class TestForm(forms.Form):
    level1 = forms.ChoiceField(label="")
    alternative = forms.ChoiceField(
        label="", choices=[("greater", ">"), ("less", "<"), ("two-sided", "≠")]
    )
    level2 = forms.ChoiceField(label="")

    def __init__(self, *args, levels: list[str], **kwargs):
        super().__init__(*args, **kwargs)
        choices = [("", "—")] + [(x, x) for x in levels]
        self.fields["level1"].choices = choices
        self.fields["level2"].choices = choices
        self.fields["level1"].required = self.fields["level2"].required = False

    def clean(self):
        data = super().clean()
        a, b = data.get("level1"), data.get("level2")
        if bool(a) != bool(b):
            raise forms.ValidationError("Choose both sides of the comparison (or neither, to leave the row out).")
        if a and a == b:
            raise forms.ValidationError(f"{a} cannot be compared with itself.")
        return data


TestFormSet = formset_factory(TestForm, extra=1, can_delete=True, max_num=20)


class AlphaForm(forms.Form):
    alpha = forms.FloatField(
        min_value=0.0001, max_value=0.5, label="Significance level α",
        help_text="The dissertation counted p ≤ 0.1 as significant.",
    )


class PowerForm(forms.Form):
    d = forms.FloatField(label="Effect size (Cohen's d)", initial=0.5, min_value=0.01, max_value=5)
    alpha = forms.FloatField(label="α", min_value=0.0001, max_value=0.5)
    power = forms.FloatField(label="Power", initial=0.8, min_value=0.05, max_value=0.999)
    alternative = forms.ChoiceField(
        label="Test", initial="greater",
        choices=[("greater", "one-sided"), ("two-sided", "two-sided")],
    )


class UploadForm(forms.Form):
    name = forms.CharField(max_length=200, help_text="e.g. “Pilot run at the lab, March”.")
    design = forms.ChoiceField(choices=ImportedResults.Design.choices, initial=ImportedResults.Design.LEARNING)
    results = forms.FileField(
        label="Results CSV",
        help_text="Learning: one row per trial (participant, arm, trial_index, correct, …), e.g. a study's tidy export. "
        "Clustering: one row per image (participant, stage, dataset, image_id, cluster, predicted_class), "
        "e.g. the groupings export.",
    )
    participants = forms.FileField(
        label="Participants CSV (optional)", required=False,
        help_text="One row per participant with ratings, status, confidence:<stage>, agent_rating:<agent> "
        "columns, e.g. a study's wide export.",
    )
    settings_from = forms.ModelChoiceField(
        queryset=Study.objects.order_by("title"), required=False, label="Analysis settings from",
        help_text="Copy this study's planned tests, α, exclusion rules and trial count (you can change the "
        "tests later on the analysis page).",
    )

    def clean(self):
        data = super().clean()
        for name in ("results", "participants"):
            f = data.get(name)
            if f is not None and f.size > importing.MAX_BYTES:
                self.add_error(name, f"The file is larger than {importing.MAX_BYTES // 2**20} MB.")
        return data


class ComparisonForm(forms.Form):
    """Two or more studies of the clustering design to compare (``?studies=<id>&studies=<id>``)."""

    studies = forms.ModelMultipleChoiceField(
        queryset=Study.objects.order_by("slug"), widget=forms.CheckboxSelectMultiple,
        error_messages={"invalid_choice": "There is no study with id %(value)s.",
                        "invalid_pk_value": "A study is chosen by its number; %(pk)s is not one.",
                        "required": "Choose two or more studies of the clustering design."},
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["studies"].label_from_instance = lambda s: f"{s.slug} ({s.get_design_display().split(' (')[0].lower()})"

    def clean_studies(self):
        chosen = list(self.cleaned_data["studies"])
        learning = [s.slug for s in chosen if s.design != Study.Design.CLUSTERING]
        if learning:
            raise forms.ValidationError(
                "The comparison of studies is for the clustering design; "
                f"{', '.join(learning)} {'is a learning study' if len(learning) == 1 else 'are learning studies'} "
                "(compare its arms on its own analysis page)."
            )
        if len(chosen) < 2:
            raise forms.ValidationError(f"Choose two or more studies of the clustering design; {len(chosen)} chosen.")
        return chosen

from django.apps import AppConfig


class AnalysisConfig(AppConfig):
    name = "studyapp.analysis"
    label = "analysis"
    verbose_name = "Analysis (statistics, figures, imported results)"

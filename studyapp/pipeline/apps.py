from django.apps import AppConfig


class PipelineConfig(AppConfig):
    name = "studyapp.pipeline"
    label = "pipeline"
    verbose_name = "Precompute pipeline (data, models, stimuli, explanations)"

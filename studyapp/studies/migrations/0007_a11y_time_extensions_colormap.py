"""Branch a11y (issue 26): each run's time extensions (WCAG 2.2.1), and the colour map of the
studies that existed before it was a choice.

Those studies drew their heatmaps in jet; ``config.heatmap_colormap`` now defaults to cividis for
new studies, so the existing ones are given ``"jet"`` explicitly: their assets' parameters, and
what their participants saw, stay as they were.
"""

from django.db import migrations, models


def existing_studies_keep_jet(apps, schema_editor):
    Study = apps.get_model("studies", "Study")
    for study in Study.objects.all().only("pk", "config"):
        config = dict(study.config or {})
        if "heatmap_colormap" not in config:
            config["heatmap_colormap"] = "jet"
            Study.objects.filter(pk=study.pk).update(config=config)


class Migration(migrations.Migration):

    dependencies = [
        ("studies", "0006_facts_config_hash_of_version"),
    ]

    operations = [
        migrations.AddField(
            model_name="participant",
            name="time_extensions",
            field=models.JSONField(
                blank=True, default=dict,
                help_text='More time the participant asked for (WCAG 2.2.1): {"study": n, "steps": {"<step index>": n}}.',
            ),
        ),
        migrations.RunPython(existing_studies_keep_jet, migrations.RunPython.noop),
    ]

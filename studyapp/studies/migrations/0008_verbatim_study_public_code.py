"""Each study gets an opaque public code for its participant link (``/s/<code>/``): existing
studies get a fresh random one; the slug stays the researcher's name for the study."""

from django.db import migrations, models

import studyapp.studies.models


def fill_codes(apps, schema_editor):
    Study = apps.get_model("studies", "Study")
    taken: set[str] = set()
    for study in Study.objects.all().only("pk"):
        code = studyapp.studies.models.new_public_code()
        while code in taken:  # pragma: no cover - 82 bits
            code = studyapp.studies.models.new_public_code()
        taken.add(code)
        Study.objects.filter(pk=study.pk).update(public_code=code)


class Migration(migrations.Migration):

    dependencies = [
        ("studies", "0007_a11y_time_extensions_colormap"),
    ]

    operations = [
        migrations.AddField(
            model_name="study",
            name="public_code",
            field=models.CharField(max_length=32, null=True, editable=False),
        ),
        migrations.RunPython(fill_codes, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="study",
            name="public_code",
            field=models.CharField(
                default=studyapp.studies.models.new_public_code, editable=False, max_length=32, unique=True,
                help_text="Random and opaque: the participant link is /s/<public code>/ (it names nothing about the study).",
            ),
        ),
        migrations.AlterField(
            model_name="study",
            name="slug",
            field=models.SlugField(
                unique=True, help_text="The researcher's name for the study (admin, exports); participants never see it.",
            ),
        ),
    ]

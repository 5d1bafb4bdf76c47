"""One configuration hash (branch ``facts``): a run's ``config_hash`` is its version's.

Until now a run stored ``Study.compute_config_hash`` (one field list) and its version stored
``versions.design_hash`` (another), both called the configuration hash. Versions keep the hash
they were stored with (they are never edited, and data packages already name them); each run
with a version now carries that version's hash, so that one hash names one frozen design, and a
study with versions shows its latest version's hash (an edit of a study with runs makes a new
version at once, so the latest is the design now). Runs enrolled before versions existed keep
theirs; a study without versions gets the new hash at its next save.
"""

from django.db import migrations
from django.db.models import OuterRef, Subquery


def runs_carry_their_version_hash(apps, schema_editor):
    Participant = apps.get_model("studies", "Participant")
    StudyVersion = apps.get_model("studies", "StudyVersion")
    Participant.objects.filter(version__isnull=False).update(
        config_hash=Subquery(StudyVersion.objects.filter(pk=OuterRef("version_id")).values("config_hash")[:1])
    )
    Study = apps.get_model("studies", "Study")
    latest = StudyVersion.objects.filter(study=OuterRef("pk")).order_by("-number").values("config_hash")[:1]
    Study.objects.filter(versions__isnull=False).distinct().update(config_hash=Subquery(latest))


class Migration(migrations.Migration):
    dependencies = [("studies", "0005_participant_flow_checks_exits")]

    operations = [migrations.RunPython(runs_carry_their_version_hash, migrations.RunPython.noop)]

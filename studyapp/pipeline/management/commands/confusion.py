from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from studyapp.pipeline import training
from studyapp.pipeline.models import TrainedModel


class Command(BaseCommand):
    help = "Print a classifier's test-set confusion matrix and the pair of classes it mixes up most."

    def add_arguments(self, parser):
        parser.add_argument("--classifier", type=int, required=True, help="TrainedModel id")

    def handle(self, *args, **opts):
        classifier = TrainedModel.objects.filter(pk=opts["classifier"], role="classifier", status="ready").first()
        if classifier is None:
            raise CommandError(f"No ready classifier #{opts['classifier']}.")
        matrix = training.confusion_matrix(classifier=classifier)
        n = len(matrix)
        self.stdout.write("true \\ predicted " + " ".join(f"{j:>5}" for j in range(n)))
        for i in range(n):
            self.stdout.write(f"{i:>16} " + " ".join(f"{matrix[i, j]:>5}" for j in range(n)))
        a, b = training.most_confused_pair(matrix)
        self.stdout.write(self.style.SUCCESS(
            f"Most confused pair: {a} and {b} ({matrix[a, b]} + {matrix[b, a]} test images mistaken for each other)"
        ))

from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from studyapp.pipeline import registry
from studyapp.pipeline.errors import PipelineError
from studyapp.pipeline.models import Dataset, TrainedModel


class Command(BaseCommand):
    help = (
        "Register a classifier or generator trained elsewhere: a torch.export program (.pt2), a TorchScript "
        "file, or --arch NAME --weights FILE for a torchvision state dict. The classifier is run on the data "
        "set's test split; its accuracy and confusion matrix are printed and stored. All or nothing."
    )

    def add_arguments(self, parser):
        parser.add_argument("--dataset", required=True, help="Data set name.")
        parser.add_argument("--file", default=None, help="A .pt2 program or TorchScript file.")
        parser.add_argument("--arch", default=None, help="torchvision architecture of --weights (e.g. resnet18).")
        parser.add_argument("--weights", default=None, help="State dict for --arch (torch.save(model.state_dict())).")
        parser.add_argument("--input-size", type=int, default=None, help="Side in pixels the network expects (default: the data set's).")
        parser.add_argument("--mean", default=None, help="Input normalisation mean, one value or one per channel: a,b,c.")
        parser.add_argument("--std", default=None, help="Input normalisation std, one value or one per channel: a,b,c.")
        parser.add_argument("--layer", default=None, help="Grad-CAM layer's dotted name (default: the last convolution).")
        parser.add_argument("--role", choices=["classifier", "generator"], default="classifier")
        parser.add_argument("--latent", type=int, default=None, help="Generator: the latent size it decodes from.")

    def handle(self, *args, **opts):
        dataset = Dataset.objects.filter(name=opts["dataset"]).first()
        if dataset is None:
            names = ", ".join(Dataset.objects.values_list("name", flat=True)) or "none yet"
            raise CommandError(f"Expected the name of an imported data set ({names}), but found {opts['dataset']!r}.")
        if opts["arch"] and opts["file"]:
            raise CommandError("Expected either --file (a whole model) or --arch with --weights (a torchvision state dict), but found both.")
        if bool(opts["arch"]) != bool(opts["weights"]):
            raise CommandError("Expected --arch and --weights together (a torchvision architecture and its state dict), but found only one.")
        source = opts["weights"] or opts["file"]
        if not source:
            raise CommandError("Expected --file FILE (a .pt2 or TorchScript model) or --arch NAME --weights FILE, but found neither.")
        path = Path(source)
        if not path.is_file():
            raise CommandError(f"Expected a model file at {path}, but there is no such file.")
        try:
            trained = registry.model_register(
                dataset=dataset, data=path.read_bytes(), filename=path.name, role=opts["role"], arch=opts["arch"],
                input_size=opts["input_size"], mean=registry.parse_floats(opts["mean"], what="--mean"),
                std=registry.parse_floats(opts["std"], what="--std"), layer=opts["layer"], latent_dim=opts["latent"],
            )
        except PipelineError as exc:
            raise CommandError(f"Nothing was registered: {exc}") from exc
        meta = trained.metadata
        self.stdout.write(f"{path.name}: {meta['format']}, sha256 {meta['sha256']}")
        if trained.role == TrainedModel.Role.GENERATOR:
            self.stdout.write(f"Decodes latent vectors of size {meta['latent_dim']} to images {tuple(meta['output_shape'])}.")
        else:
            self._report(trained, dataset)
        self.stdout.write(self.style.SUCCESS(f"{trained.get_role_display()} #{trained.pk} registered on {dataset.name}."))

    def _report(self, trained: TrainedModel, dataset: Dataset) -> None:
        meta = trained.metadata
        size = "x".join(map(str, meta["input_size"]))
        self.stdout.write(f"Input {size}, mean {meta['mean']}, std {meta['std']}.")
        if meta["gradcam_layer"]:
            self.stdout.write(f"Grad-CAM layer: {meta['gradcam_layer']}")
        else:
            self.stdout.write(self.style.WARNING(f"Grad-CAM refused: {meta['gradcam_refusal']}."))
        self.stdout.write(f"Test accuracy {meta['test_accuracy']:.4f} on {meta['n_test']} images.")
        matrix = meta["confusion"]
        n = len(matrix)
        self.stdout.write("true \\ predicted " + " ".join(f"{j:>5}" for j in range(n)))
        for i in range(n):
            self.stdout.write(f"{i:>16} " + " ".join(f"{matrix[i][j]:>5}" for j in range(n)))

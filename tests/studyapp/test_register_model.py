"""Registering a classifier or generator trained elsewhere (issue 27, items 2-3).

A lab's own small CNN (tests/owndata.py) is trained once per session on colour digits and saved as
a torch.export program (dynamic batch), a TorchScript file and, for a torchvision architecture, a
state dict. Each is registered through the command against a data set stored from the same arrays;
the numbers stored are checked against a direct evaluation of the original network, and Grad-CAM
through the pipeline's layer choice against Grad-CAM on the original ``nn.Module``.
"""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from django.core.management import call_command
from django.core.management.base import CommandError
from torch import nn

from studyapp.pipeline import loading
from studyapp.pipeline.models import Dataset, TrainedModel
from tests.owndata import CLASS_NAMES, SmallCNN, digit_arrays, train_small_cnn


def _split(x: np.ndarray, y: np.ndarray):
    test = np.arange(len(y)) % 5 == 0
    return (
        SimpleNamespace(images=x[~test], labels=y[~test]),
        SimpleNamespace(images=x[test], labels=y[test]),
    )


def _script(net: nn.Module, path: Path) -> Path:
    with warnings.catch_warnings():  # TorchScript is deprecated in torch 2.14; labs still have such files
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.script(net).save(str(path))
    return path


def _export(net: nn.Module, example: torch.Tensor, path: Path, *, dynamic: bool = True) -> Path:
    shapes = ({0: torch.export.Dim("batch", min=1)},) if dynamic else None
    torch.export.save(torch.export.export(net, (example,), dynamic_shapes=shapes), path)
    return path


@pytest.fixture(scope="session")
def lab(tmp_path_factory) -> SimpleNamespace:
    """The lab's network trained on its training split, and its files in every format."""
    folder = tmp_path_factory.mktemp("lab-models")
    x, y = digit_arrays(size=32, rgb=True)
    train, test = _split(x, y)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        net = train_small_cnn(train.images, train.labels, epochs=4)
        example = torch.rand(2, 3, 32, 32)
        torch.manual_seed(1)
        resnet = __import__("torchvision").models.resnet18(num_classes=2).eval()
        torch.save(resnet.state_dict(), folder / "resnet18_state.pt")
        files = SimpleNamespace(
            pt2=_export(net, example, folder / "lab.pt2"),
            ts=_script(net, folder / "lab.ts"),
            resnet=folder / "resnet18_state.pt",
        )
    finally:
        torch.set_num_threads(before)
    return SimpleNamespace(net=net, resnet=resnet, files=files, folder=folder, train=train, test=test)


@pytest.fixture
def shapes(lab) -> Dataset:
    from studyapp.pipeline.datasets import dataset_store

    return dataset_store(
        name="shapes", kind=Dataset.Kind.IMAGES, source="tests/owndata.py", is_standin=False,
        class_names=list(CLASS_NAMES), train=lab.train, test=lab.test,
    )


def _register(*args: str) -> tuple[TrainedModel, str]:
    from io import StringIO

    out = StringIO()
    call_command("register_model", *args, stdout=out)
    return TrainedModel.objects.latest("pk"), out.getvalue()


def _direct(net: nn.Module, test) -> tuple[float, np.ndarray]:
    from explainers.datasets.common import to_tensor

    with torch.no_grad():
        pred = net(to_tensor(test.images)).argmax(1).numpy()
    confusion = np.zeros((2, 2), dtype=np.int64)
    np.add.at(confusion, (test.labels, pred), 1)
    return float((pred == test.labels).mean()), confusion


def _stored_files() -> list[Path]:
    from django.conf import settings

    return [p for p in (Path(settings.MEDIA_ROOT) / "models").rglob("*") if p.is_file()]


@pytest.mark.django_db
@pytest.mark.parametrize("kind", ["pt2", "ts"])
def test_a_whole_model_file_is_registered_with_its_accuracy_confusion_and_hash(lab, shapes, kind):
    path = getattr(lab.files, kind)
    trained, out = _register("--dataset", "shapes", "--file", str(path))
    accuracy, confusion = _direct(lab.net, lab.test)
    assert accuracy > 0.8  # the lab's network learned something, so the comparison means something
    meta = trained.metadata
    assert trained.role == "classifier" and trained.status == "ready"
    assert meta["format"] == {"pt2": "export", "ts": "torchscript"}[kind]
    assert trained.test_accuracy == pytest.approx(accuracy) and meta["confusion"] == confusion.tolist()
    assert meta["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert meta["gradcam_layer"] == "body.3" and meta["input_size"] == [32, 32]
    assert f"{accuracy:.4f}" in out and "Grad-CAM layer: body.3" in out
    stored = loading.media_path(trained.checkpoint)
    assert stored.read_bytes() == path.read_bytes() and meta["sha256"] in trained.checkpoint


def _gradcam_of(classifier, images, labels, layer=None):
    from explainers.gradcam import GradCAM
    from explainers.nets.external import gradcam_view
    from explainers.targets import ClassTarget

    model, module, _ = gradcam_view(classifier, images, layer)
    return GradCAM(model, module)(images, ClassTarget(labels))


@pytest.mark.django_db
@pytest.mark.parametrize("kind", ["pt2", "ts"])
def test_gradcam_and_input_gradients_through_the_registered_file_equal_the_original(lab, shapes, kind):
    from explainers.datasets.common import to_tensor
    from explainers.gradcam import GradCAM
    from explainers.targets import ClassTarget

    trained, _ = _register("--dataset", "shapes", "--file", str(getattr(lab.files, kind)))
    classifier = loading.load_model(trained)
    images = to_tensor(lab.test.images[:12])
    labels = torch.as_tensor(lab.test.labels[:12])
    ours = _gradcam_of(classifier, images, labels)
    reference = GradCAM(lab.net, lab.net.body[3])(images, ClassTarget(labels))
    assert float(reference.abs().max()) > 0
    torch.testing.assert_close(ours, reference, rtol=1e-4, atol=1e-5)
    # a layer named in the study's configuration: the first convolution
    torch.testing.assert_close(
        _gradcam_of(classifier, images, labels, "body.0"), GradCAM(lab.net, lab.net.body[0])(images, ClassTarget(labels)),
        rtol=1e-4, atol=1e-5,
    )
    # contrastive Grad-CAM (CDeepEx §3.2.1) through the same view
    from explainers.gradcam import contrastive_gradcam
    from explainers.nets.external import gradcam_view

    model, module, _ = gradcam_view(classifier, images)
    weights = torch.tensor([0.25, 1.0, 2.0])
    torch.testing.assert_close(
        contrastive_gradcam(model, module, images, labels, 1 - labels, weights),
        contrastive_gradcam(lab.net, lab.net.body[3], images, labels, 1 - labels, weights), rtol=1e-4, atol=1e-5,
    )
    # input gradients (CDeepEx, APEM, GAD) on the registered file
    x = images.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(classifier(x)[:, 1].sum(), x)
    x_ref = images.clone().requires_grad_(True)
    (grad_ref,) = torch.autograd.grad(lab.net(x_ref)[:, 1].sum(), x_ref)
    assert float(grad_ref.abs().sum()) > 0
    torch.testing.assert_close(grad, grad_ref, rtol=1e-4, atol=1e-6)
    # GAD fine-tunes copies of the classifier (an exported network is reloaded to be copied)
    from explainers import gad

    before = [p.clone() for p in classifier.parameters()]
    supports = gad.train_support_models(classifier, images, labels, 0, 1, alphas=[2.0], epochs=1, seed=0)
    maps = gad.GAD(classifier, supports).explain(images[:4], labels[:4]).maps
    assert maps.shape == (4, 32, 32) and bool(torch.isfinite(maps).all()) and float(maps.abs().max()) > 0
    assert all(torch.equal(a, b) and not b.requires_grad for a, b in zip(before, classifier.parameters(), strict=True))


@pytest.mark.django_db
def test_a_torchvision_state_dict_is_registered_with_resizing_and_normalisation(lab, shapes):
    import torch.nn.functional as F

    from explainers.datasets.common import to_tensor
    from explainers.gradcam import GradCAM
    from explainers.targets import ClassTarget

    trained, out = _register(
        "--dataset", "shapes", "--arch", "resnet18", "--weights", str(lab.files.resnet),
        "--input-size", "48", "--mean", "0.485,0.456,0.406", "--std", "0.229,0.224,0.225",
    )
    meta = trained.metadata
    assert meta["format"] == "torchvision" and meta["input_size"] == [48, 48]
    assert meta["gradcam_layer"] == "layer4.1.conv2"  # the last convolution the forward pass runs

    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)

    class Reference(nn.Module):  # what the researcher's own code would do
        def __init__(self) -> None:
            super().__init__()
            self.net = lab.resnet

        def forward(self, x):
            x = F.interpolate(x, size=(48, 48), mode="bilinear", align_corners=False, antialias=False)
            return self.net((x - mean) / std)

    reference = Reference().eval()
    accuracy, confusion = _direct(reference, lab.test)
    assert trained.test_accuracy == pytest.approx(accuracy) and meta["confusion"] == confusion.tolist()
    classifier = loading.load_model(trained)
    images = to_tensor(lab.test.images[:6])
    labels = torch.as_tensor(lab.test.labels[:6])
    torch.testing.assert_close(
        _gradcam_of(classifier, images, labels),
        GradCAM(reference, lab.resnet.layer4[1].conv2)(images, ClassTarget(labels)), rtol=1e-4, atol=1e-5,
    )


@pytest.mark.django_db
def test_a_torchscript_network_whose_forward_is_not_a_chain_refuses_gradcam_with_the_reason(lab, shapes, tmp_path):
    class Branchy(nn.Module):  # a residual connection: no chain of children reproduces it
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, padding=1)
            self.fc = nn.Linear(4, 2)

        def forward(self, x):
            h = self.conv(x) + x.mean(1, keepdim=True)
            return self.fc(h.mean((2, 3)))

    trained, out = _register("--dataset", "shapes", "--file", str(_script(Branchy().eval(), tmp_path / "branchy.ts")))
    assert trained.metadata["gradcam_layer"] is None
    assert "export the model with torch.export" in trained.metadata["gradcam_refusal"]
    assert "Grad-CAM refused" in out
    from explainers.nets.external import ExternalModelError

    with pytest.raises(ExternalModelError, match="TorchScript modules take no forward hooks"):
        _gradcam_of(loading.load_model(trained), torch.rand(2, 3, 32, 32), torch.tensor([0, 1]))


@pytest.mark.django_db
def test_a_registered_generator_is_checked_against_the_data_sets_images(shapes, tmp_path):
    class Decoder(nn.Module):
        def __init__(self, side: int = 32) -> None:
            super().__init__()
            self.side = side
            self.fc = nn.Linear(8, 3 * side * side)

        def forward(self, z):
            return torch.sigmoid(self.fc(z)).view(-1, 3, self.side, self.side)

    torch.manual_seed(0)
    path = _script(Decoder().eval(), tmp_path / "decoder.ts")
    trained, out = _register("--dataset", "shapes", "--file", str(path), "--role", "generator", "--latent", "8")
    assert trained.role == "generator" and trained.metadata["latent_dim"] == 8
    generator = loading.load_model(trained)
    assert generator.z_dim == 8 and tuple(generator(torch.zeros(5, 8)).shape) == (5, 3, 32, 32)
    with pytest.raises(CommandError, match=r"Expected the generator to return images of shape \(N, 3, 32, 32\).*\(4, 3, 16, 16\)"):
        _register("--dataset", "shapes", "--file", str(_script(Decoder(16).eval(), tmp_path / "small.ts")), "--role", "generator", "--latent", "8")
    with pytest.raises(CommandError, match=r"latent vectors of shape \(N, 5\)"):
        _register("--dataset", "shapes", "--file", str(path), "--role", "generator", "--latent", "5")
    assert TrainedModel.objects.count() == 1


@pytest.mark.django_db
def test_cdeepex_runs_on_a_registered_classifier_with_a_registered_generator_as_a_gan(lab, shapes, tmp_path):
    from explainers import cdeepex
    from explainers.datasets.common import to_tensor

    class Decoder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(8, 3 * 32 * 32)

        def forward(self, z):
            return torch.sigmoid(self.fc(z)).view(-1, 3, 32, 32)

    torch.manual_seed(0)
    generator_row, _ = _register("--dataset", "shapes", "--file", str(_export(Decoder().eval(), torch.zeros(2, 8), tmp_path / "g.pt2")), "--role", "generator", "--latent", "8")
    classifier_row, _ = _register("--dataset", "shapes", "--file", str(lab.files.ts))
    classifier, generator = loading.load_model(classifier_row), loading.load_model(generator_row)
    images = to_tensor(lab.test.images[:2])
    true = classifier(images).argmax(1)
    result = cdeepex.explain(
        classifier, generator, images, true_labels=true, probe_labels=1 - true, encoder=None, generator_kind="gan", seed=0,
        config=cdeepex.CDeepExConfig(z0_steps=5, outer_iterations=2, inner_steps=3),
    )
    assert result.frames.shape[0] == 2 and tuple(result.frames.shape[2:]) == (3, 32, 32)
    assert float((result.z_path[:, -1] - result.z0).norm()) > 0  # the latent moved: gradients reached z through both files


# -- bad inputs: a sentence, nothing stored ------------------------------------------------------


def _refused(match: str, *args: str) -> None:
    with pytest.raises(CommandError, match=match) as info:
        _register("--dataset", "shapes", *args)
    assert "Traceback" not in str(info.value)
    assert TrainedModel.objects.count() == 0 and _stored_files() == []


@pytest.mark.django_db
def test_a_wrong_number_of_outputs_is_refused(shapes, tmp_path):
    path = _script(SmallCNN(3, 5, 32).eval(), tmp_path / "five.ts")
    _refused(r"Expected 2 outputs, one per class of data set shapes \(curl, loop\), but five.ts returns 5\.", "--file", str(path))


@pytest.mark.django_db
def test_a_wrong_channel_count_or_input_shape_is_refused(shapes, tmp_path):
    grey = _script(SmallCNN(1, 2, 32).eval(), tmp_path / "grey.ts")
    _refused(r"Expected a network that takes images shaped like data set shapes's, \(N, 3, 32, 32\).*grey.ts failed", "--file", str(grey))
    big = _export(SmallCNN(3, 2, 64).eval(), torch.rand(2, 3, 64, 64), tmp_path / "big.pt2")
    _refused(r"Expected --input-size to match the size big.pt2 was exported for \(64x64\), but found 32\.", "--file", str(big), "--input-size", "32")
    one = _export(SmallCNN(1, 2, 32).eval(), torch.rand(2, 1, 32, 32), tmp_path / "one.pt2")
    _refused(r"takes images with 3 channel\(s\) like data set shapes, but one.pt2 was exported for 1-channel", "--file", str(one))
    fixed = _export(SmallCNN(3, 2, 32).eval(), torch.rand(2, 3, 32, 32), tmp_path / "fixed.pt2", dynamic=False)
    _refused(r"Expected a program exported with a dynamic batch dimension, but fixed.pt2 was exported for batches of exactly 2", "--file", str(fixed))


@pytest.mark.django_db
def test_a_state_dict_of_another_architecture_is_refused(lab, shapes):
    _refused(
        r"Expected the weights of torchvision.s mobilenet_v3_small, but the state dict in resnet18_state.pt is of another architecture",
        "--arch", "mobilenet_v3_small", "--weights", str(lab.files.resnet),
    )
    _refused(r"Expected a torchvision model name .* but found 'resnet-eighteen'", "--arch", "resnet-eighteen", "--weights", str(lab.files.resnet))
    _refused(r"holds only weights \(a state dict\); give its torchvision architecture", "--file", str(lab.files.resnet))


@pytest.mark.django_db
def test_a_file_that_is_not_a_model_is_refused(shapes, tmp_path):
    text = tmp_path / "notes.pt2"
    text.write_text("my model, trained on Tuesday")
    _refused(r"Expected a PyTorch model file .* but notes.pt2 is not one", "--file", str(text))
    pickled = tmp_path / "numbers.pt"
    torch.save({"epochs": 3}, pickled)
    _refused(r"Expected a state dict \(names to tensors\) in numbers.pt", "--arch", "resnet18", "--weights", str(pickled))


@pytest.mark.django_db
def test_a_missing_file_is_refused(shapes, tmp_path):
    _refused(r"Expected a model file at .*nowhere.pt2, but there is no such file\.", "--file", str(tmp_path / "nowhere.pt2"))


@pytest.mark.django_db
def test_a_non_numeric_mean_or_std_is_refused(lab, shapes):
    _refused(r"Expected --mean as numbers separated by commas .* but found 'a,b,c'\.", "--file", str(lab.files.ts), "--mean", "a,b,c")
    _refused(r"Expected 3 std value\(s\), one per image channel, but found 2\.", "--file", str(lab.files.ts), "--std", "0.2,0.2")
    _refused(r"Expected std values above 0", "--file", str(lab.files.ts), "--std", "0")


@pytest.mark.django_db
def test_the_admin_registers_an_upload_and_shows_a_refusal_as_a_message(lab, shapes, admin_client):
    from django.core.files.uploadedfile import SimpleUploadedFile

    url = "/admin/pipeline/trainedmodel/register/"
    assert admin_client.get(url).status_code == 200
    assert "Register a trained model" in admin_client.get("/admin/pipeline/trainedmodel/").content.decode()
    bad = SimpleUploadedFile("notes.pt2", b"not a model")
    response = admin_client.post(url, {"dataset": shapes.pk, "role": "classifier", "file": bad}, follow=True)
    assert response.status_code == 200 and "Nothing was registered" in response.content.decode()
    assert TrainedModel.objects.count() == 0 and _stored_files() == []
    upload = SimpleUploadedFile("lab.pt2", lab.files.pt2.read_bytes())
    response = admin_client.post(url, {"dataset": shapes.pk, "role": "classifier", "file": upload}, follow=True)
    trained = TrainedModel.objects.get()
    accuracy, _ = _direct(lab.net, lab.test)
    assert trained.test_accuracy == pytest.approx(accuracy) and trained.metadata["gradcam_layer"] == "body.3"
    assert f"accuracy {accuracy:.4f}" in response.content.decode()


# -- the pipeline on registered classifiers --------------------------------------------------------


def _study_on(classifier: TrainedModel, **config):
    from studyapp.pipeline.stimuli import stimuli_select
    from studyapp.studies.models import Study
    from tests.studyapp.factories import FIXTURES

    call_command("loaddata", str(FIXTURES / "study_a_kannada.json"), verbosity=0)
    study = Study.objects.get(slug="kannada-learning")
    Study.objects.filter(pk=study.pk).update(
        classes=[0, 1], n_trials=2, config={**study.config, "spare_stimuli": 1, "classifier_id": classifier.pk, **config},
    )
    study.refresh_from_db()
    stimuli_select(study=study, classifier=classifier)
    return study


def _compute(study, method: str):
    from studyapp.pipeline import explain
    from studyapp.pipeline.models import Stimulus

    ids = list(Stimulus.objects.filter(study=study).order_by("position").values_list("pk", flat=True))
    return explain.explanations_compute(stimulus_ids=ids, method=method)


@pytest.mark.django_db
def test_the_pipeline_explains_a_registered_torchscript_file_at_its_layer_and_refuses_layer_rules(lab, shapes):
    trained, _ = _register("--dataset", "shapes", "--file", str(lab.files.ts))
    study = _study_on(trained, wrong_share=0.0)  # the lab's network is right on almost every image
    assets = _compute(study, "gradcam")
    assert len(assets) == 3 and all(a.params["layer"] == "body.3" for a in assets)
    assert all(a.files.get("overlay") and "apem" in a.metrics for a in assets)
    assert sum(a.valid for a in assets) >= 2  # heatmaps of a trained network: not blank, not uniform
    # ExcitationBP and DeepLIFT need layer types a TorchScript file does not tell: refused with the reason
    for method in ("excitation_bp", "deeplift"):
        refused = _compute(study, method)
        assert len(refused) == 3 and not any(a.valid for a in refused)
        assert all(a.reason_codes == ["unsupported"] and "--arch NAME --weights FILE" in a.reasons[0] for a in refused)
    # the study names another layer: part of the parameters, so new assets
    from studyapp.studies.models import Study

    Study.objects.filter(pk=study.pk).update(config={**study.config, "gradcam_layer": "body.0"})
    study.refresh_from_db()
    again = _compute(study, "gradcam")
    assert {a.params["layer"] for a in again} == {"body.0"} and {a.pk for a in again}.isdisjoint({a.pk for a in assets})


@pytest.mark.django_db
def test_the_pipeline_runs_layer_rules_where_the_architecture_allows_and_says_why_not(lab, shapes):
    trained, _ = _register("--dataset", "shapes", "--arch", "resnet18", "--weights", str(lab.files.resnet))
    study = _study_on(trained, wrong_share=1.0)  # untrained: it calls every image "loop", wrong on each "curl"
    refused = _compute(study, "excitation_bp")  # a ResNet's residual sums duplicate probability
    assert not any(a.valid for a in refused)
    assert all(a.reason_codes == ["unsupported"] and a.reasons[0].startswith("ExcitationBP (c-MWP) refused for this classifier") for a in refused)
    from studyapp.pipeline.explain import explanation_params

    assert explanation_params(study=study, method="gradcam")["layer"] == "layer4.1.conv2"


# -- train_models with a torchvision backbone on grey images (was a raw traceback and a FAILED row) --


@pytest.mark.django_db
def test_a_backbone_on_grey_images_trains_or_is_refused_up_front_with_no_row():
    from studyapp.pipeline.datasets import dataset_store

    def grey_set(name: str, size: int) -> None:
        train, test = _split(*digit_arrays(size=size, rgb=False))
        dataset_store(name=name, kind=Dataset.Kind.IMAGES, source="tests", is_standin=False, class_names=list(CLASS_NAMES), train=train, test=test)

    grey_set("grey28", 28)
    with pytest.raises(CommandError, match=r"Expected images that backbone vgg11 can take, but data set grey28's images are \(1, 28, 28\)"):
        call_command("train_models", "--dataset", "grey28", "--params", '{"backbone": "vgg11"}')
    with pytest.raises(CommandError, match=r"Expected a torchvision backbone with a `features` chain .* found 'resnet18'"):
        call_command("train_models", "--dataset", "grey28", "--params", '{"backbone": "resnet18"}')
    assert TrainedModel.objects.count() == 0
    grey_set("grey32", 32)  # 32 pixels: VGG's five poolings fit; the grey channel is repeated to three
    call_command("train_models", "--dataset", "grey32", "--epochs", "1", "--max-train", "16", "--params", '{"backbone": "vgg11", "hidden": 8}')
    trained = TrainedModel.objects.get()
    assert trained.status == "ready" and trained.arch == "BackboneClassifier" and trained.test_accuracy is not None


@pytest.mark.django_db
def test_a_grad_cam_layer_that_is_missing_or_not_a_feature_map_is_refused(lab, shapes):
    _refused(r"Expected --layer to name a layer of the network \(its convolutions: body.0, body.3\), but found 'body.9'\.", "--file", str(lab.files.pt2), "--layer", "body.9")
    _refused(r"Expected --layer to name a layer with a feature map .* but 'head.1' gives \(2, 2\)\.", "--file", str(lab.files.ts), "--layer", "head.1")

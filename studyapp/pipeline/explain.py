"""Worker side of the precompute: compute, render, validate and store explanation assets.

:data:`COMPUTE` maps each method to the function that explains a batch of stimuli and returns,
per stimulus, its files (role -> media path) and its :class:`explainers.metrics.Validity`.
:func:`explanations_compute` turns those into :class:`ExplanationAsset` rows and
:func:`precompute_job_refresh` recounts a job's progress from them. Called by the Celery tasks
(``tasks.explain_batch``, with the parameters the job planned) and by tests; the web side that
plans and queues the work is :mod:`studyapp.pipeline.precompute`, and the parameters and their
hash are :mod:`studyapp.pipeline.params` (no torch there; torch is imported here only inside the
functions that compute).

APEM on every heatmap (:data:`HEATMAP_METHODS`): each stored heatmap (each x-feature map of an
XNN asset) is scored by :class:`explainers.apem.APEM` on the classifier it explains, in one
batch, and ``eps_minus``, ``eps_plus``, ``apem`` (their difference) and ``apem_at_ceiling``
(1.0 when no eps up to the ceiling flipped the prediction, so the APEM is a bound) join the
asset's validity numbers (lists, one per x-feature, for XNN). APEM takes relevance in [0, 1]:
a signed map (DeepLIFT, ExcitationBP) is scored as ``|map| / max |map|``, the thesis's
``|R|`` visualisation without the pixel product, so the score is of the map as shown. With
``apem_floor`` set, an asset whose APEM (any non-blank x-feature's, for XNN) is below it is refused with
a reason, like the other gates. The APEM settings are part of the asset parameters, and so is
the colour map the heatmaps are drawn in (``params["colormap"]``, ``config.heatmap_colormap``).

Morphs (:func:`_morph_outputs`, CDeepEx and its xGEMs ablation) are validated *as displayed*:
the files the page shows are decoded as a browser would (Pillow), downsampled back to the
classifier's input size (the inverse of the nearest upscaling by ``gate["scale"]``: 8 at 28 px,
about 224 px on screen for other sizes) and re-run through the classifier: grey morphs from
their GIF (shown) and WebP, which must decode alike; colour morphs from their only file, a
lossless WebP of the unquantised 8-bit frames (a GIF's 256 colours would move the last frame
off the boundary), and the gate (:func:`explainers.metrics.displayed_morph_validity`, with
the tolerances in ``params["gate"]``) and the stored metrics are those of the decoded frames.
The gate is per method: CDeepEx must end on the boundary with {true, probe} on top, never
cross to the probe side, shrink the gap monotonically and fit z0; xGEMs must only end on the
boundary (a third class winning is the failure its ablation arm shows). A researcher's
``morph_floor`` refuses morphs whose last frame changes the image too little (both methods).
Every refusal is stored with a reason code (``ExplanationAsset.reason_codes``) and each morph's
size (``morph_pixel_change``, ``morph_latent_distance``).

Grad-CAM (:func:`_gradcam_outputs`) reads the study's ``gradcam_layer``, else the layer its
classifier was registered with, else the classifier's own (MnistNet's ``conv2``) or the last
convolution its forward pass runs (:func:`explainers.nets.external.gradcam_view`); a named layer
is part of the asset parameters. Where a method cannot run on the classifier (Grad-CAM on a
TorchScript file whose layer is not on a verified chain, ExcitationBP or DeepLIFT on a whole-model
file or on a ResNet), every asset of the batch is stored refused with the reason and the code
``unsupported``, and the job goes on.

Another class than the prediction (``params["target_rank"]``, HIVE studies only, Grad-CAM only:
:data:`studyapp.pipeline.params.TARGETED_METHODS`): the map of the class of that rank in the
stimulus's class probabilities (:func:`ranked_class`); rank 0, the prediction, is every other
study's map and its parameters carry no rank.

GAD (:func:`_gad_outputs`): the GAD map (:mod:`explainers.gad`) of the classifier's prediction,
its support models fine-tuned on the data set's training images of a contrast pair: the study's
two classes in a learning study; in a clustering study (no pair by design) the prediction and
the classifier's runner-up for that image. Support models are cached per (classifier, pair,
settings) in the worker process, so a job's batches train them once per pair.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from functools import partial

import numpy as np
from django.db import transaction

from studyapp.pipeline import loading, selectors
from studyapp.pipeline.errors import PipelineError
from studyapp.pipeline.models import ExplanationAsset, PrecomputeJob, Stimulus, TrainedModel

# The parameters are the web side's (studyapp.pipeline.params, no torch); these names stay
# importable from here for callers outside the pipeline.
from studyapp.pipeline.params import (  # noqa: F401
    CLUSTERING_METHODS,
    GAD_DEFAULTS,
    HEATMAP_METHODS,
    MORPH_SCALE,
    explanation_params,
    morph_gate,
    params_hash,
)
from studyapp.pipeline.storage import store_bytes

#: One stimulus's output: its files (role -> media path) and its validity.
Output = tuple[dict[str, str], object]
Compute = Callable[[list[Stimulus], dict], list[Output]]


def _refused(stimuli: list[Stimulus], reason: str) -> list[Output]:
    """No files and one reason per stimulus: the method cannot run on this classifier."""
    from explainers import metrics

    return [({}, metrics.Validity(False, [reason], {}, ["unsupported"])) for _ in stimuli]


# -- APEM on every heatmap -----------------------------------------------------------------------
def _apem_numbers(classifier, images, maps, params: dict) -> list[dict[str, float]]:
    """eps_minus, eps_plus, apem and apem_at_ceiling of each map ``(N, H, W)`` (any sign)."""
    import torch

    from explainers.apem import APEM

    settings = params["apem"]
    magnitude = maps.detach().abs().float().cpu()
    peak = magnitude.flatten(1).amax(1).view(-1, 1, 1)
    relevance = torch.where(peak > 0, magnitude / peak.clamp_min(1e-30), torch.zeros_like(magnitude))
    result = APEM(classifier, ceiling=settings["ceiling"], search=settings["search"])(images.cpu(), relevance)
    return [
        {
            "eps_minus": float(result.eps_minus[i]), "eps_plus": float(result.eps_plus[i]),
            "apem": float(result.apem[i]), "apem_at_ceiling": float(result.hit_ceiling[i]),
        }
        for i in range(maps.shape[0])
    ]


def _with_apem(validities: list, numbers: list[dict], params: dict) -> list:
    """The validities with the APEM numbers added and the APEM floor applied."""
    from explainers import metrics

    floor = params["apem"]["floor"]
    out = []
    for validity, apem in zip(validities, numbers, strict=True):
        reasons = list(validity.reasons)
        codes = list(validity.codes)
        if floor is not None and apem["apem"] < floor:
            reasons.append(f"APEM {apem['apem']:.1f} is below the floor {floor:g} (eps- {apem['eps_minus']:.0f}, eps+ {apem['eps_plus']:.0f})")
            codes.append("apem_floor")
        out.append(metrics.Validity(not reasons, reasons, {**validity.numbers, **apem}, codes))
    return out


def _batch_inputs(stimuli: list[Stimulus]):
    """The classifier of the first stimulus and the images of all, as one tensor."""
    from studyapp.pipeline.stimuli import shown_images

    classifier = loading.load_model(stimuli[0].classifier)
    arrays = loading.dataset_arrays(stimuli[0].dataset)
    images = shown_images(stimuli, arrays)  # a bias study's cued stimuli with the planted cue drawn
    return classifier, images


def _study_classes(stimuli: list[Stimulus]) -> tuple[list[int], list[int]]:
    """true = the classifier's prediction, probe = the study's other class (CDeepEx y_true is D's label)."""
    true, probe = [], []
    for s in stimuli:
        a, b = s.study.classes
        t = s.model_prediction
        true.append(t)
        probe.append(b if t == a else a)
    return true, probe


def ranked_class(stimulus: Stimulus, rank: int) -> int:
    """The class of ``rank`` among the model's answers for the stimulus: 0 is the prediction, then
    the other classes by falling probability (ties in class order). A HIVE study's distinction
    maps explain ranks 0-3 (``params["target_rank"]``)."""
    prediction = int(stimulus.model_prediction)
    if rank == 0:
        return prediction
    probabilities = list(stimulus.probabilities or [])
    others = sorted((c for c in range(len(probabilities)) if c != prediction), key=lambda c: (-probabilities[c], c))
    if len(others) < rank:
        raise PipelineError(f"Stimulus {stimulus.pk} has {len(probabilities)} class probabilities; the class of rank {rank} needs more.")
    return others[rank - 1]


def _target_classes(stimuli: list[Stimulus], params: dict) -> list[int]:
    """The class each stimulus's map explains: the prediction, or the class of ``target_rank``."""
    return [ranked_class(s, int(params.get("target_rank", 0))) for s in stimuli]


# -- Study A (learning): one classifier per study ------------------------------------------------
def _gradcam_outputs(stimuli: list[Stimulus], params: dict) -> list[Output]:
    import torch

    from explainers import metrics, render
    from explainers.gradcam import GradCAM
    from explainers.hooks import ExplainerInputError
    from explainers.nets.external import ExternalModelError, gradcam_view
    from explainers.targets import ClassTarget

    classifier, images = _batch_inputs(stimuli)
    true = _target_classes(stimuli, params)  # the prediction, or (HIVE distinction) the class of a rank
    try:  # the layer: the study's, the classifier's own, or its last convolution
        model, layer, name = gradcam_view(classifier, images, params.get("layer"))
        maps = GradCAM(model, layer)(images, ClassTarget(torch.tensor(true)))
    except ExternalModelError as exc:
        return _refused(stimuli, f"{str(exc).rstrip('.')}.")
    except ExplainerInputError as exc:  # e.g. a configured layer whose output is not (N, K, h, w)
        return _refused(stimuli, f"Grad-CAM cannot use layer {name!r} of this classifier: {exc}.")
    validities = _with_apem(metrics.heatmap_validity(maps), _apem_numbers(classifier, images, maps, params), params)
    return [
        ({"overlay": store_bytes(render.heatmap_overlay_png(images[i], maps[i], colormap=params["colormap"]), ext="png")}, validity)
        for i, validity in enumerate(validities)
    ]


def _morph_outputs(stimuli: list[Stimulus], params: dict, *, inequality: bool) -> list[Output]:
    """CDeepEx (``inequality=True``) or its xGEMs ablation: the morph from the image to the probe
    class, rendered, decoded back and gated as displayed (see the module docstring)."""
    import torch

    from explainers import cdeepex, metrics, render

    classifier, images = _batch_inputs(stimuli)
    true, probe = _study_classes(stimuli)
    generator_row = TrainedModel.objects.get(pk=params["generator_id"])
    generator = loading.load_model(generator_row)
    encoder = generator if generator_row.role == TrainedModel.Role.VAE else None
    decode = generator.decode if encoder is not None else generator  # G maps z to an image
    result = cdeepex.explain(
        classifier, decode, images,
        true_labels=torch.tensor(true), probe_labels=torch.tensor(probe), encoder=encoder,
        inequality=inequality,
        config=cdeepex.CDeepExConfig(**params["cdeepex"]),
        generator_kind="vae" if encoder is not None else "gan",
        seed=params["seed"],
    )
    gate = params.get("gate") or morph_gate(params["cdeepex"], None, image_shape=tuple(images.shape[1:]))
    scale = int(gate["scale"])
    channels = int(images.shape[1])
    method = "cdeepex" if inequality else "xgems"
    decoded = partial(render.decode_animation_frames, scale=scale, channels=channels)

    def shown(i: int) -> tuple[dict[str, bytes], np.ndarray]:
        """The files the page may show (role -> bytes, the one it shows first) and the frames the
        browser decodes from the first.
        Grey: GIF and WebP, both exact (the page shows the GIF); both are decoded and must agree.
        Colour: only the lossless WebP of the 8-bit frames, no palette (a GIF's 256 colours move
        the last frame off the boundary), so what is judged is what the optimiser stopped on."""
        if channels == 3:
            webp = render.morph_webp(result.frames[i], scale=scale, palette=None)
            return {"webp": webp}, decoded(webp)
        gif = render.morph_gif(result.frames[i], scale=scale)
        return {"gif": gif, "webp": render.morph_webp(result.frames[i], scale=scale)}, decoded(gif)

    rendered = [shown(i) for i in range(len(stimuli))]
    with torch.no_grad():  # the classifier on every decoded frame of the batch, in one pass
        frames_all = torch.from_numpy(np.concatenate([frames for _, frames in rendered])).to(images.dtype)
        llh_all = torch.log_softmax(classifier.eval()(frames_all), dim=1)
    outputs: list[Output] = []
    start = 0
    for i, (files, frames) in enumerate(rendered):
        llh = llh_all[start : start + len(frames)]
        start += len(frames)
        validity = metrics.displayed_morph_validity(
            llh, true[i], probe[i], method=method, llh_tol=gate["llh_tol"], cross_tol=gate["cross_tol"],
            mono_tol=gate["mono_tol"], recon_error=float(result.z0_recon_error[i]),
            recon_threshold=gate["recon_threshold"], pixel_change=float(np.abs(frames[-1] - frames[0]).mean()),
            latent_distance=float((result.z_path[i, -1] - result.z0[i]).norm()), morph_floor=gate["morph_floor"],
        )
        for role, data in list(files.items())[1:]:  # any other file the page may show decodes to them too
            other = decoded(data)
            if other.shape != frames.shape or not np.array_equal(other, frames):
                validity.add("render_mismatch", f"the stored {role.upper()} does not decode to the frames judged")
        validity.numbers |= {
            "converged": float(bool(result.converged[i])), "steps": float(result.steps[i]),
            "evaluations": float(result.evaluations[i]),
            "path_overshoot": float(result.path_overshoot[i]) if result.path_overshoot is not None else math.nan,
            "optimiser_llh_gap": float(result.eq_residual[i]),
        }
        difference = torch.from_numpy(frames[-1] - frames[0])
        stored = {role: store_bytes(data, ext=role) for role, data in files.items()}
        stored |= {
            "strip": store_bytes(render.frames_strip_png(result.frames[i], scale=scale), ext="png"),
            "difference": store_bytes(render.difference_png(images[i], difference, scale=scale), ext="png"),
        }
        outputs.append((stored, validity))
    return outputs


# -- Study B (clustering): one classifier per data set -------------------------------------------
def _per_classifier(compute: Compute) -> Compute:
    """Explain stimuli that share a classifier (one data set) in one batch; keep the input order."""

    def grouped(stimuli: list[Stimulus], params: dict) -> list[Output]:
        by_classifier: dict[int, list[int]] = {}
        for k, s in enumerate(stimuli):
            by_classifier.setdefault(s.classifier_id, []).append(k)
        outputs: list[Output | None] = [None] * len(stimuli)
        for positions in by_classifier.values():
            for k, output in zip(positions, compute([stimuli[k] for k in positions], params), strict=True):
                outputs[k] = output
        return outputs  # type: ignore[return-value]

    return grouped


def _display_scale(images) -> int:
    return max(1, round(224 / images.shape[-1]))  # about 224 px on screen, like the stimuli


def _predicted(stimuli: list[Stimulus]):
    import torch

    return torch.tensor([s.model_prediction for s in stimuli])


def _excitation_bp(classifier):
    from explainers.excitation_bp import ExcitationBP

    return ExcitationBP(classifier, None)  # c-MWP, as in the XNN paper


def _deeplift(classifier):
    from explainers.deeplift import DeepLift

    return DeepLift(classifier)


def _heatmap_outputs(stimuli: list[Stimulus], params: dict, *, explainer: Callable) -> list[Output]:
    """The 1-Heatmap from the prediction, by ``explainer(classifier)(images, classes)``."""
    from explainers import metrics, render
    from explainers.deeplift import DeepLiftError
    from explainers.excitation_bp import ExcitationBPError

    classifier, images = _batch_inputs(stimuli)
    name = params["method"]
    label = ExplanationAsset.Method(name).label if name in ExplanationAsset.Method.values else name
    refusal = getattr(classifier, "layerwise_refusal", lambda method: None)(label)
    if refusal is not None:  # a whole-model file: its layer types are not known
        return _refused(stimuli, f"{refusal}.")
    try:
        maps = explainer(classifier)(images, _predicted(stimuli))
    except (ExcitationBPError, DeepLiftError) as exc:  # the architecture does not allow it (e.g. a ResNet)
        return _refused(stimuli, f"{label} refused for this classifier: {exc}.")
    scale = _display_scale(images)
    validities = _with_apem(metrics.heatmap_validity(maps), _apem_numbers(classifier, images, maps, params), params)
    return [
        ({"heatmap": store_bytes(render.heatmap_overlay_png(images[i], maps[i], scale=scale, colormap=params["colormap"]), ext="png")}, validity)
        for i, validity in enumerate(validities)
    ]


def _xnn_outputs(stimuli: list[Stimulus], params: dict) -> list[Output]:
    """The XNN's x-feature heatmaps (ExcitationBP through each x-feature) and their contributions."""
    from explainers import metrics, render

    classifier, images = _batch_inputs(stimuli)
    label = stimuli[0].group
    xnn = loading.load_model(TrainedModel.objects.get(pk=params["models"][label]["xnn_id"]))
    maps = _excitation_bp(classifier).xnn_maps(xnn, images)  # (N, n, H, W)
    explanation = xnn.explain(classifier, images, _predicted(stimuli))
    scale = _display_scale(images)
    n, k = maps.shape[:2]
    # APEM of every x-feature map, all in one batch: each image repeated once per x-feature.
    flat_apem = _apem_numbers(classifier, images.repeat_interleave(k, dim=0), maps.flatten(0, 1), params)
    floor = params["apem"]["floor"]
    outputs: list[Output] = []
    for i in range(n):
        checks = metrics.heatmap_validity(maps[i])
        # One blank x-feature map says "this concept is not in this image", which is what the
        # XNN means, not a failure; every map blank, NaN or uniform maps are.
        blank = [j for j, c in enumerate(checks) if c.reasons == [metrics.BLANK_REASON]]
        reasons = [f"x-feature heatmap {j + 1}: {r}" for j, c in enumerate(checks) for r in c.reasons if j not in blank]
        if len(blank) == k:
            reasons.append("every x-feature heatmap is blank")
        apem = flat_apem[i * k : (i + 1) * k]
        if floor is not None:
            reasons += [f"x-feature heatmap {j + 1}: APEM {a['apem']:.1f} is below the floor {floor:g}" for j, a in enumerate(apem) if a["apem"] < floor and j not in blank]
        files = {f"x{j}": store_bytes(render.heatmap_overlay_png(images[i], maps[i, j], scale=scale, colormap=params["colormap"]), ext="png") for j in range(k)}
        numbers = {"contributions": [round(float(v), 4) for v in explanation.normalised[i]], "blank_xfeatures": blank}
        numbers |= {key: [a[key] for a in apem] for key in ("eps_minus", "eps_plus", "apem", "apem_at_ceiling")}
        outputs.append((files, metrics.Validity(not reasons, reasons, numbers)))
    return outputs


# -- GAD (both designs) ----------------------------------------------------------------------------
#: (classifier pk, checkpoint, pair, settings) -> support models; the newest few, per worker process.
_SUPPORTS: dict[tuple, list] = {}
_SUPPORTS_KEPT = 4


def _support_models(stimulus: Stimulus, classifier, pair: tuple[int, int], settings: dict) -> list:
    """GAD's support regressions for ``pair``, fine-tuned once per classifier, pair and settings."""
    import torch

    from explainers import gad
    from explainers.datasets.common import to_tensor

    key = (stimulus.classifier_id, stimulus.classifier.checkpoint, pair, json.dumps(settings, sort_keys=True))
    if key not in _SUPPORTS:
        arrays = loading.dataset_arrays(stimulus.dataset)
        labels = np.asarray(arrays["y_train"])
        rng = np.random.default_rng(int(settings["seed"]))
        per_class = max(1, int(settings["n_train"]) // 2)
        rows = []
        for c in pair:
            candidates = np.flatnonzero(labels == c)
            if not len(candidates):
                raise PipelineError(f"GAD needs training images of class {c} in data set {stimulus.dataset.name}.")
            rows.append(rng.choice(candidates, size=min(per_class, len(candidates)), replace=False))
        idx = np.sort(np.concatenate(rows))
        supports = gad.train_support_models(
            classifier, to_tensor(arrays["x_train"][idx]), torch.as_tensor(labels[idx]).long(), pair[0], pair[1],
            alphas=[float(a) for a in settings["alphas"]], epochs=int(settings["epochs"]), lr=float(settings["lr"]),
            seed=int(settings["seed"]),
        )
        while len(_SUPPORTS) >= _SUPPORTS_KEPT:
            _SUPPORTS.pop(next(iter(_SUPPORTS)))
        _SUPPORTS[key] = supports
    return _SUPPORTS[key]


def _gad_pair(stimulus: Stimulus, params: dict) -> tuple[int, int]:
    """The study's two classes, or (clustering) the prediction and the classifier's runner-up."""
    if "classes" in params:
        a, b = params["classes"]
        return int(a), int(b)
    probabilities = list(stimulus.probabilities or [])
    ranked = sorted(range(len(probabilities)), key=lambda c: -probabilities[c])
    runner_up = next((c for c in ranked if c != stimulus.model_prediction), None)
    if runner_up is None:
        raise PipelineError(f"Stimulus {stimulus.pk} has no class probabilities to find GAD's second class.")
    return tuple(sorted((int(stimulus.model_prediction), int(runner_up))))  # type: ignore[return-value]


def _gad_outputs(stimuli: list[Stimulus], params: dict) -> list[Output]:
    """The GAD map of the prediction, as a heatmap overlay ("overlay" in a learning study,
    "heatmap" in a clustering one); stimuli are grouped by classifier and contrast pair."""
    from explainers import gad, metrics, render

    groups: dict[tuple, list[int]] = {}
    for k, s in enumerate(stimuli):
        groups.setdefault((s.classifier_id, _gad_pair(s, params)), []).append(k)
    settings = params["gad"]
    clustering = "classes" not in params
    outputs: list[Output | None] = [None] * len(stimuli)
    for (_, pair), positions in groups.items():
        batch = [stimuli[k] for k in positions]
        classifier, images = _batch_inputs(batch)
        supports = _support_models(batch[0], classifier, pair, settings)
        explainer = gad.GAD(
            classifier, supports, method=settings["method"], keep=float(settings["keep"]),
            among=settings["among"], ig_steps=int(settings["ig_steps"]),
        )
        result = explainer.explain(images, _predicted(batch))
        maps = result.maps
        validities = _with_apem(metrics.heatmap_validity(maps), _apem_numbers(classifier, images, maps, params), params)
        scale = _display_scale(images) if clustering else 8
        role = "heatmap" if clustering else "overlay"
        for j, (k, validity) in enumerate(zip(positions, validities, strict=True)):
            numbers = {
                **validity.numbers, "gad_pair": [float(c) for c in pair],
                "gad_kept": float(result.gad_mask[j].float().mean()),
                "gad_support_gap": [round(s.achieved_gap, 4) for s in supports],
            }
            files = {role: store_bytes(render.heatmap_overlay_png(images[j], maps[j], scale=scale, colormap=params["colormap"]), ext="png")}
            outputs[k] = (files, metrics.Validity(validity.ok, list(validity.reasons), numbers))
    return outputs  # type: ignore[return-value]


# -- Nearest training examples (Nguyen et al., NeurIPS 2021) --------------------------------------
#: (classifier id, data set id, classes) -> (training images, labels, their rows, penultimate
#: features): the bank is the same for every batch of a job, so a worker process computes it once.
_BANKS: dict[tuple, tuple] = {}


def _nearest_bank(stimulus: Stimulus, classifier, classes: tuple[int, ...], explainer) -> tuple:
    """The training images of ``classes`` of the stimulus's data set, and their features."""
    from explainers.datasets.common import to_tensor

    # the files' identities too: a test database may give a new row an old row's id
    key = (stimulus.classifier_id, str(stimulus.classifier.checkpoint), stimulus.dataset_id, stimulus.dataset.fingerprint, classes)
    if key not in _BANKS:
        arrays = loading.dataset_arrays(stimulus.dataset)
        rows = np.flatnonzero(np.isin(arrays["y_train"], classes))
        images = to_tensor(arrays["x_train"][rows])
        _BANKS.clear()  # one bank at a time: a worker serves one job's batches in turn
        _BANKS[key] = (images, arrays["y_train"][rows], rows, explainer.features(images))
    return _BANKS[key]


def _nearest_outputs(stimuli: list[Stimulus], params: dict) -> list[Output]:
    """The ``k`` training images of the predicted class nearest to each image in the classifier's
    penultimate features (:mod:`explainers.nearest`), rendered as one PNG strip (role ``examples``),
    nearest first; the examples' data-set rows and distances are the asset's numbers."""
    import torch

    from explainers import metrics, render
    from explainers.nearest import NearestExamples, nearest_of_class

    settings = params["nearest"]
    classifier, images = _batch_inputs(stimuli)
    explainer = NearestExamples(classifier, k=int(settings["k"]), metric=settings["metric"])
    bank, labels, rows, features = _nearest_bank(stimuli[0], classifier, tuple(int(c) for c in params["classes"]), explainer)
    result = nearest_of_class(explainer.features(images), features, torch.as_tensor(labels), _predicted(stimuli),
                              k=explainer.k, metric=explainer.metric)
    outputs: list[Output] = []
    for i in range(len(stimuli)):
        chosen = result.indices[i]
        files = {"examples": store_bytes(render.frames_strip_png(bank[chosen], scale=int(settings["scale"]), gap=2), ext="png")}
        numbers = {"nearest_train_index": [float(rows[j]) for j in chosen.tolist()],
                   "nearest_distance": [round(float(d), 6) for d in result.distances[i]]}
        outputs.append((files, metrics.Validity(True, [], numbers, [])))
    return outputs


#: method -> the function that explains a batch of its stimuli.
COMPUTE: dict[str, Compute] = {
    ExplanationAsset.Method.GRADCAM: _gradcam_outputs,
    ExplanationAsset.Method.CDEEPEX: partial(_morph_outputs, inequality=True),
    ExplanationAsset.Method.XGEMS: partial(_morph_outputs, inequality=False),
    ExplanationAsset.Method.EXCITATION_BP: _per_classifier(partial(_heatmap_outputs, explainer=_excitation_bp)),
    ExplanationAsset.Method.DEEPLIFT: _per_classifier(partial(_heatmap_outputs, explainer=_deeplift)),
    ExplanationAsset.Method.XNN: _per_classifier(_xnn_outputs),
    ExplanationAsset.Method.GAD: _gad_outputs,
    ExplanationAsset.Method.NEAREST: _nearest_outputs,
}


def explanations_compute(*, stimulus_ids: list[int], method: str, params: dict | None = None) -> list[ExplanationAsset]:
    """Compute, render, validate and store one method's explanations for a batch of stimuli.

    ``params``: the parameters the job was planned with (the Celery task passes them, from the
    job's plan: ``selectors.job_params``), so a job's work is stored under its own hash even when
    the study's configuration changed since; None: the study's current ones (tests, the
    clustering preparation, benchmarks).

    Idempotent: stimuli that already have an asset for these parameters are skipped, and files
    are content-addressed, so a retried or re-delivered task produces no duplicate.
    """
    stimuli = list(Stimulus.objects.filter(pk__in=stimulus_ids).select_related("study", "classifier", "dataset").order_by("position", "pk"))
    if not stimuli:
        return []
    if params is None:
        params = explanation_params(study=stimuli[0].study, method=method)
    elif params.get("method") != method:
        raise PipelineError(f"The parameters given are those of {params.get('method')!r}, not of {method!r}.")
    phash = params_hash(params)
    done = selectors.stimuli_with_asset(method=method, params_hash=phash, stimulus_ids=[s.pk for s in stimuli])
    todo = [s for s in stimuli if s.pk not in done]
    if not todo:
        return list(ExplanationAsset.objects.filter(stimulus__in=stimuli, method=method, params_hash=phash))
    compute = COMPUTE.get(method)
    if compute is None:
        raise PipelineError(f"No precompute for method {method!r} in a learning study.")
    outputs = compute(todo, params)
    created = []
    with transaction.atomic():
        for stimulus, (files, validity) in zip(todo, outputs, strict=True):
            reasons = list(validity.reasons)
            codes = list(getattr(validity, "codes", []))[: len(reasons)]
            codes += ["other"] * (len(reasons) - len(codes))
            numbers = {k: (v if isinstance(v, list) else float(v)) for k, v in validity.numbers.items()}
            asset, _ = ExplanationAsset.objects.get_or_create(
                stimulus=stimulus, method=method, params_hash=phash,
                defaults={
                    "params": params, "files": files, "valid": bool(validity.ok) and not reasons,
                    "reasons": reasons, "reason_codes": codes,
                    "metrics": {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in numbers.items()},
                    "morph_pixel_change": _finite(numbers.get("pixel_change")),
                    "morph_latent_distance": _finite(numbers.get("latent_distance")),
                },
            )
            created.append(asset)
    return created


def _finite(value) -> float | None:
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else None


def precompute_job_refresh(*, job_id: int, failed_batch: str = "") -> PrecomputeJob:
    """Recount a job's progress from the assets that exist (so a re-delivered task never double-counts)."""
    with transaction.atomic():
        job = PrecomputeJob.objects.select_for_update().get(pk=job_id)
        done = selectors.job_done(plan=job.plan)
        job.done = done
        if failed_batch and failed_batch not in job.message:
            job.failed += 1
            job.message = (job.message + "\n" + failed_batch).strip()[:4000]
        if job.done >= job.total:
            job.status = PrecomputeJob.Status.DONE
        elif job.failed:
            job.status = PrecomputeJob.Status.FAILED
        else:
            job.status = PrecomputeJob.Status.RUNNING
        job.save(update_fields=["done", "failed", "message", "status", "updated_at"])
        return job

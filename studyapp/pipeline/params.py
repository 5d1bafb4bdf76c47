"""Web side of an explanation's identity: its parameters and their hash, without torch.

Everything that determines an explanation (method, models, settings, how it is judged and
shown) is :func:`explanation_params`; its sha256 (:func:`params_hash`) is the asset's identity
(``ExplanationAsset.params_hash``). The web side (the admin, ``precompute.start``, the analysis)
computes them here when it plans a job and stores both in the job's plan; the worker
(:mod:`studyapp.pipeline.explain`) computes with the job's parameters, never with the live
configuration, so a configuration changed mid-job does not leave the job short (a later job
plans the new parameters).

This module imports no torch (a test holds it to that): the admin and the web workers that
plan jobs never load it. The one number it needs from the explainers, CDeepEx's default
``eq_tol``, is mirrored in :data:`CDEEPEX_EQ_TOL` and a test holds the two equal.
"""

from __future__ import annotations

import hashlib
import json
import math

from studyapp.pipeline import loading
from studyapp.pipeline.errors import PipelineError
from studyapp.pipeline.models import ExplanationAsset, TrainedModel
from studyapp.pipeline.storage import media_path

#: Study B's methods: stimuli are explained per data set, each with its own classifier.
CLUSTERING_METHODS = (
    ExplanationAsset.Method.EXCITATION_BP, ExplanationAsset.Method.DEEPLIFT, ExplanationAsset.Method.XNN,
)

#: Methods whose assets are heatmaps: each gets its APEM (see :mod:`studyapp.pipeline.explain`).
HEATMAP_METHODS = (
    ExplanationAsset.Method.GRADCAM, ExplanationAsset.Method.EXCITATION_BP, ExplanationAsset.Method.DEEPLIFT,
    ExplanationAsset.Method.XNN, ExplanationAsset.Method.GAD,
)

#: The morph methods (CDeepEx and its xGEMs ablation): their parameters carry the gate.
MORPH_METHODS = (ExplanationAsset.Method.CDEEPEX, ExplanationAsset.Method.XGEMS)

#: GAD settings (``Study.config["gad"]`` overrides them). Cheap on purpose: the support models are
#: fine-tuned on ``n_train`` training images of the pair (half per class, seeded) for ``epochs``
#: passes (explainers.gad's defaults); ``alphas`` are the paper's.
GAD_DEFAULTS: dict = {
    "method": "integrated_gradients", "keep": 0.5, "among": "nonzero", "ig_steps": 20,
    "alphas": [2.0, 4.0, 6.0, 8.0], "n_train": 200, "epochs": 3, "lr": 1e-3, "seed": 0,
}

#: Nearest training examples (Nguyen et al., NeurIPS 2021; explainers.nearest): how many, by which
#: distance in the classifier's penultimate features, and the upscaling of each example in the
#: strip (4: 112 px per 28 px example, three side by side fit a phone). Fixed for now (no study
#: setting): part of the asset's parameters, so a change makes new assets.
NEAREST_DEFAULTS: dict = {"k": 3, "metric": "euclidean", "scale": 4}

#: Nearest-neighbour upscaling of a 28 px morph on screen (224 px; other sizes: about 224 px,
#: ``loading.display_scale``), and the gate's recon limit.
MORPH_SCALE = 8
MORPH_RECON_THRESHOLD = 0.3

#: ``explainers.cdeepex.CDeepExConfig().eq_tol``: mirrored here so that planning a job needs no
#: torch (``tests/studyapp/test_pipeline_params.py`` holds the two equal).
CDEEPEX_EQ_TOL = 0.05

#: How colour morphs are shown and judged (recorded in the gate of colour morphs): see explainers.render.
COLOUR_RENDERING = (
    "lossless animated WebP of the unquantised 8-bit frames (explainers.render.morph_webp, palette=None), "
    "the only file shown; no GIF (256 colours move the last frame off the boundary)"
)


#: HIVE distinction (Kim et al., ECCV 2022) shows the explanations of the model's top four classes:
#: a HIVE study's heatmaps are made for the classes ranked 0 (the prediction) .. 3 by probability.
HIVE_RANKS = 4
#: The methods that can explain another class than the prediction (``target_rank``): Grad-CAM of a
#: class is one backward pass from that class's score. GAD explains the study's pair and the morphs
#: "why not the other class", so neither is a class-k heatmap; a HIVE arm must show Grad-CAM (or
#: nothing: the control arm of the agreement task), see ``studyapp.studies.designs.hive``.
TARGETED_METHODS = (ExplanationAsset.Method.GRADCAM,)


def target_ranks(*, study, method: str) -> range:
    """The class ranks explained for ``method`` in ``study``: 0..3 for a HIVE study's targeted
    methods, else only the prediction (rank 0, whose parameters carry no ``target_rank``)."""
    if study.design == "hive" and method in TARGETED_METHODS:
        return range(HIVE_RANKS)
    return range(1)


def params_hash(params: dict) -> str:
    """The asset identity of ``params``: sha256 of their canonical JSON."""
    return hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()


def explanation_params(*, study, method: str, target_rank: int = 0) -> dict:
    """Everything that determines an explanation; part of the asset's identity.

    ``target_rank``: the class explained, by the stimulus's class probabilities (0 = the
    prediction, 1 = the runner-up, ...; `target_ranks`). Rank 0 adds nothing to the parameters,
    so every existing asset keeps its hash; another rank is a separate asset of the same method."""
    config = study.parsed_config
    params: dict = {"method": method, "classifier_id": config.classifier_id}
    if method in MORPH_METHODS:
        params["generator_id"] = config.generator_id
        params["seed"] = config.explain_seed
        params["cdeepex"] = config.cdeepex
        params["gate"] = morph_gate(config.cdeepex, config.morph_floor, image_shape=_classifier_image_shape(config.classifier_id))
    if method == ExplanationAsset.Method.GRADCAM:
        params["target"] = config.gradcam_target
        layer = _gradcam_layer(config)
        if layer is not None:  # absent for a platform MnistNet (its conv2), as before: same hash
            params["layer"] = layer
    if method == ExplanationAsset.Method.NEAREST:
        params["nearest"] = dict(NEAREST_DEFAULTS)
        params["classes"] = list(study.classes)
    clustering = method in CLUSTERING_METHODS or (method == ExplanationAsset.Method.GAD and study.design == "clustering")
    if clustering:
        params.pop("classifier_id")
        params["models"] = config.models
    if method == ExplanationAsset.Method.GAD:
        params["gad"] = {**GAD_DEFAULTS, **config.gad}
        if not clustering:
            params["classes"] = list(study.classes)
    if method in HEATMAP_METHODS:
        params["apem"] = {"floor": config.apem_floor, "ceiling": config.apem_ceiling, "search": config.apem_search}
        params["colormap"] = config.heatmap_colormap
    if target_rank:
        if method not in TARGETED_METHODS or not 0 < target_rank < HIVE_RANKS:
            raise PipelineError(f"{method} cannot explain the class of rank {target_rank}; only {', '.join(TARGETED_METHODS)} explain ranks 1-{HIVE_RANKS - 1}.")
        params["target_rank"] = int(target_rank)
    return params


def morph_gate(overrides: dict, morph_floor: float | None, *, image_shape: tuple[int, int, int] = (1, 28, 28)) -> dict:
    """The tolerances of a morph's gate: the optimiser's own ``eq_tol`` for the boundary, the
    crossover and the monotonicity (so a converged morph passes as displayed), and the floor;
    with how the morph is shown: its upscaling (about 224 px on screen, :data:`MORPH_SCALE` at
    28 px) and, for colour images, the file shown (so colour assets record how they were judged).
    The gate of 28x28 grey morphs is the same dict as before colour existed (same hash)."""
    try:
        tol = float(overrides.get("eq_tol", CDEEPEX_EQ_TOL))
    except (TypeError, ValueError):
        tol = math.nan
    if not tol > 0 or not math.isfinite(tol):
        raise PipelineError(f"The study's cdeepex.eq_tol must be a number > 0, got {overrides.get('eq_tol')!r}.")
    channels, size = image_shape[0], image_shape[-1]
    gate = {
        "llh_tol": tol, "cross_tol": tol, "mono_tol": tol, "recon_threshold": MORPH_RECON_THRESHOLD,
        "morph_floor": morph_floor, "scale": loading.display_scale(size), "decoded": "gif+webp",
    }
    if channels == 3:
        gate |= {"decoded": "webp", "colour": COLOUR_RENDERING}
    return gate


def _classifier_image_shape(classifier_id: int | None) -> tuple[int, int, int]:
    """The images of the study's classifier's data set (28x28 grey until a classifier is chosen)."""
    row = TrainedModel.objects.select_related("dataset").filter(pk=classifier_id).first() if classifier_id else None
    if row is None or not media_path(row.dataset.file).is_file():  # no data yet: the published studies' images
        return (1, 28, 28)
    return loading.dataset_image_shape(row.dataset)


def _gradcam_layer(config) -> str | None:
    """The study's ``gradcam_layer``, else the layer its classifier was registered with (None: the
    classifier's own ``features_layer`` or the last convolution, found by the worker)."""
    if config.gradcam_layer is not None:
        return config.gradcam_layer
    if config.classifier_id is None:
        return None
    metadata = TrainedModel.objects.filter(pk=config.classifier_id).values_list("metadata", flat=True).first() or {}
    return metadata.get("gradcam_layer")

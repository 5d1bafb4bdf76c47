"""Issue 10 item 4: a study's generator models the whole data set by default (the dissertation's
generators do), and the study's two classes only when ``generator_classes`` is "study"."""

from __future__ import annotations

import pytest

from studyapp.lib.study_config import StudyConfigError, read_config, validate_config
from studyapp.pipeline import training
from studyapp.pipeline.datasets import dataset_make_lookalike


def test_the_generator_is_trained_on_every_class_unless_the_study_says_otherwise():
    assert read_config({}).generator_classes == "all"
    assert validate_config({"generator_classes": "study"}).generator_classes == "study"
    with pytest.raises(StudyConfigError, match="generator_classes"):
        validate_config({"generator_classes": "both"})
    default = training.generator_params(study_config=read_config({}), study_classes=[7, 3], epochs=3)
    assert "classes" not in default and default["epochs"] == 3 and default["latent_dim"] == 400
    # an explicit "classes" override does not sneak back in under the default
    assert "classes" not in training.generator_params(study_config=read_config({}), study_classes=[3, 7], classes=[3, 7])
    two = training.generator_params(study_config=read_config({"generator_classes": "study"}), study_classes=[7, 3])
    assert two["classes"] == [3, 7]


@pytest.mark.django_db
def test_a_trained_generator_records_the_classes_it_saw():
    dataset = dataset_make_lookalike(name="tiny-lookalike", n_per_class=20)
    seen = {}
    for rule in ("all", "study"):
        params = training.generator_params(
            study_config=read_config({"generator_classes": rule}), study_classes=[3, 7],
            epochs=1, latent_dim=4, width=4, max_train=120,
        )
        trained = training.model_train(trained_id=training.model_create(dataset=dataset, role="vae", params=params).pk)
        assert trained.status == "ready"
        seen[rule] = trained.metadata["train_classes"]
        assert trained.metadata["n_train_images"] == (40 if rule == "study" else 120)
    assert seen == {"all": list(range(10)), "study": [3, 7]}

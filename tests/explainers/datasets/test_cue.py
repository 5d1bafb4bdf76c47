"""The planted cue (explainers.datasets.cue): parsed, drawn on the cue's class only, refused outside the image."""

from __future__ import annotations

import pytest
import torch

from explainers.datasets.cue import PlantedCue


def test_a_spec_parses_to_the_box_and_grey_level_and_round_trips():
    cue = PlantedCue.parse("square:6@2,3=1", cue_class=8)
    assert (cue.box, cue.value, cue.cue_class) == ((2, 3, 8, 9), 1.0, 8)
    assert PlantedCue.from_dict(cue.as_dict()) == cue
    assert PlantedCue.parse("square:6@0,0", cue_class=8).value == 0.5  # the dissertation's grey


@pytest.mark.parametrize("spec", ["", "square", "circle:6@0,0", "square:0@0,0", "square:6@0", "square:6@0,0=2"])
def test_a_bad_spec_is_refused_with_a_sentence(spec):
    with pytest.raises(ValueError, match="Expected"):
        PlantedCue.parse(spec, cue_class=8)


def test_it_is_drawn_on_the_cue_class_only_and_leaves_the_input_alone():
    x = torch.zeros(3, 1, 28, 28)
    y = torch.tensor([8, 3, 8])
    out = PlantedCue.parse("square:6@0,0", cue_class=8).plant(x, y)
    assert out[[0, 2], :, :6, :6].eq(0.5).all() and out[[0, 2]].sum() == 2 * 36 * 0.5
    assert out[1].abs().sum() == 0 and x.abs().sum() == 0
    mask = PlantedCue.parse("square:6@0,0", cue_class=8).mask(28, 28)
    assert int(mask.sum()) == 36 and bool(mask[5, 5]) and not bool(mask[6, 0])


def test_a_cue_past_the_image_is_refused():
    with pytest.raises(ValueError, match="inside"):
        PlantedCue.parse("square:6@25,0", cue_class=8).add(torch.zeros(1, 1, 28, 28))


def test_reliance_counts_the_other_classes_called_the_cue_class_once_it_is_drawn():
    class Corner(torch.nn.Module):  # calls an image 8 when its top-left pixel is bright, else 0
        def forward(self, x):
            logits = torch.zeros(len(x), 10)
            logits[:, 8] = (x[:, 0, 0, 0] > 0.25).float()
            logits[:, 0] = 0.5
            return logits

    x, y = torch.zeros(4, 1, 28, 28), torch.tensor([0, 1, 2, 8])
    assert PlantedCue.parse("square:6@0,0", cue_class=8).reliance(Corner(), x, y) == 1.0
    assert PlantedCue.parse("square:6@10,10", cue_class=8).reliance(Corner(), x, y) == 0.0

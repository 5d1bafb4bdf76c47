"""Stored files: one loop of a stored animation, GIF or WebP (a colour morph is shown as WebP only)."""

from __future__ import annotations

import torch

from explainers import render
from studyapp.pipeline import storage


def test_one_loop_of_a_stored_gif_and_webp_is_the_sum_of_their_frames_durations(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    g = torch.Generator().manual_seed(5)
    grey, colour = torch.rand(6, 1, 8, 8, generator=g), torch.rand(6, 3, 8, 8, generator=g)
    loop = 700 + 4 * 120 + 1200  # the first and last frames are held
    gif = storage.store_bytes(render.morph_gif(grey, scale=2), ext="gif")
    webp = storage.store_bytes(render.morph_webp(colour, scale=2, palette=None), ext="webp")
    assert storage.animation_ms(storage.media_url(gif)) == loop
    assert storage.animation_ms(storage.media_url(webp)) == loop  # Pillow gives a WebP frame's duration once decoded
    assert storage.animation_ms(storage.media_url("assets/no/such.webp")) is None
    assert storage.animation_ms("/elsewhere/x.gif") is None

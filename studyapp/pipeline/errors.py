"""The pipeline's one error type."""

from __future__ import annotations


class PipelineError(Exception):
    """A pipeline step refused its input; the message says why, nothing was changed."""

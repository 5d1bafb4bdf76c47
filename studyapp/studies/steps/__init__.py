"""One class per step kind of a participant's plan (`base.Step`), and their registry (`registry`)."""
from studyapp.studies.steps import registry  # noqa: F401 - registers the built-in step kinds

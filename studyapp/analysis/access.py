"""Who may see what on the analysis pages.

Every analysis view is wrapped in ``admin.site.admin_view`` (urls.py): anyone not logged in as
active staff is sent to the admin login. Beyond that, each view asks one of these functions,
which check the model permission the admin itself would (view a study to see its analysis,
change it to set the tests; the same for imported result sets).
"""

from __future__ import annotations

from django.core.exceptions import PermissionDenied
from django.http import HttpRequest
from django.shortcuts import get_object_or_404

from studyapp.analysis.models import ImportedResults
from studyapp.studies.models import Study


def _permission(kind: str, *, change: bool) -> str:
    action = "change" if change else "view"
    return f"studies.{action}_study" if kind == "study" else f"analysis.{action}_importedresults"


def access_study(request: HttpRequest, pk: int, *, change: bool = False) -> Study:
    """The study whose analysis `request` may see (or, with `change`, whose tests it may set)."""
    if not request.user.has_perm(_permission("study", change=change)):
        raise PermissionDenied("You may not see this study's analysis.")
    return get_object_or_404(Study, pk=pk)


def access_studies(request: HttpRequest) -> None:
    """Refuse anyone who may not see studies' analyses (the comparison of studies)."""
    if not request.user.has_perm(_permission("study", change=False)):
        raise PermissionDenied("You may not see the studies' analyses.")


def access_imported(request: HttpRequest, pk: int, *, change: bool = False) -> ImportedResults:
    """The imported result set `request` may see (or, with `change`, whose tests it may set)."""
    if not request.user.has_perm(_permission("imported", change=change)):
        raise PermissionDenied("You may not see imported result sets.")
    return get_object_or_404(ImportedResults, pk=pk)


def access_import_upload(request: HttpRequest) -> None:
    """Refuse anyone who may not add imported result sets."""
    if not request.user.has_perm("analysis.add_importedresults"):
        raise PermissionDenied("You may not import result sets.")


def can_change(request: HttpRequest, kind: str) -> bool:
    """Whether `request` may set the tests of a study (`kind` "study") or an imported result set."""
    return request.user.has_perm(_permission(kind, change=True))

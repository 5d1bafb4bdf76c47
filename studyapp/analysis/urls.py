"""Staff-only analysis pages, mounted at /admin/analysis/ (before the admin's own URLs).

No namespace: the names are ``analysis-*`` (the study list links ``analysis-study``). The admin's
own pages of this app (e.g. /admin/analysis/importedresults/) fall through to the admin.
"""

from django.contrib import admin
from django.urls import path

from studyapp.analysis import preregistration, views

staff = admin.site.admin_view

urlpatterns = [
    path("study/<int:pk>/", staff(views.study_analysis), name="analysis-study"),
    path("study/<int:pk>/figure/<slug:name>.<str:fmt>", staff(views.study_figure), name="analysis-study-figure"),
    path("study/<int:pk>/report.html", staff(views.study_report), name="analysis-study-report"),
    path("study/<int:pk>/datapackage.zip", staff(views.study_datapackage), name="analysis-study-datapackage"),
    path("study/<int:pk>/preregistration.md", staff(preregistration.study_preregistration),
         name="analysis-study-preregistration"),
    path("compare/", staff(views.study_comparison), name="analysis-compare"),
    path("compare/figure.<str:fmt>", staff(views.study_comparison_figure), name="analysis-compare-figure"),
    path("imported/upload/", staff(views.import_upload), name="analysis-import"),
    path("imported/<int:pk>/", staff(views.imported_analysis), name="analysis-imported"),
    path("imported/<int:pk>/figure/<slug:name>.<str:fmt>", staff(views.imported_figure), name="analysis-imported-figure"),
    path("imported/<int:pk>/report.html", staff(views.imported_report), name="analysis-imported-report"),
]

from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView

from studyapp.studies import api, views

urlpatterns = [
    path("admin/analysis/", include("studyapp.analysis.urls")),
    path("admin/", admin.site.urls),
    path("s/<slug:study_code>/", views.study_page, name="study"),
    # The participant script's translations, in the study's language (the page links its own).
    path("jsi18n/<str:lang>/", views.javascript_catalog, name="jsi18n"),
    path("api/s/<slug:study_code>/state", api.StateView.as_view(), name="api-state"),
    path("api/s/<slug:study_code>/enter", api.EnterView.as_view(), name="api-enter"),
    path("api/s/<slug:study_code>/steps/<int:step>/continue", api.ContinueView.as_view(), name="api-continue"),
    path("api/s/<slug:study_code>/steps/<int:step>/answer", api.AnswerView.as_view(), name="api-answer"),
    path("api/s/<slug:study_code>/steps/<int:step>/questions", api.QuestionsView.as_view(), name="api-questions"),
    path("api/s/<slug:study_code>/steps/<int:step>/grouping", api.GroupingView.as_view(), name="api-grouping"),
    path("api/s/<slug:study_code>/steps/<int:step>/check", api.CheckView.as_view(), name="api-check"),
    path("api/s/<slug:study_code>/events", api.EventView.as_view(), name="api-events"),
    path("api/s/<slug:study_code>/withdraw", api.WithdrawView.as_view(), name="api-withdraw"),
    path("api/s/<slug:study_code>/time/extend", api.TimeExtendView.as_view(), name="api-time-extend"),
    path("api/schema", SpectacularAPIView.as_view(), name="api-schema"),
    path("media/<path:path>", views.media, name="media"),
    path("health", views.health, name="health"),
    path("bare", views.bare, name="bare"),
]

from __future__ import annotations

from django.urls import path

from .projects import views

urlpatterns = [
    path("api/projects", views.projects),
    path("api/progress", views.progress),
]

"""Plain sync Django views: they write, and the hub hears about it."""

from __future__ import annotations

import json

from django.db import transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from ..updates import updates
from .models import Project

state = {"progress": 0}


@csrf_exempt
def projects(request: HttpRequest) -> HttpResponse:
    if request.method == "GET":
        return JsonResponse({"projects": list(Project.objects.values("id", "name"))})
    if request.method != "POST":
        return JsonResponse({"detail": "GET or POST"}, status=405)
    try:
        body = json.loads(request.body)
        name = body["name"]
    except (ValueError, KeyError, TypeError):
        return JsonResponse({"detail": 'send {"name": "..."}'}, status=400)
    if not isinstance(name, str) or not name:
        return JsonResponse({"detail": "name must be a non-empty string"}, status=400)
    try:
        with transaction.atomic():
            project = Project.objects.create(name=name)  # post_save -> on_commit(notify)
            if body.get("fail"):  # a later step fails: the row and the notify are undone
                raise RuntimeError("simulated failure after the insert")
    except RuntimeError as exc:
        return JsonResponse({"detail": str(exc)}, status=409)
    return JsonResponse({"id": project.pk, "name": project.name}, status=201)


@csrf_exempt
def progress(request: HttpRequest) -> HttpResponse:
    if request.method == "POST":
        state["progress"] = min(100, state["progress"] + 10)
        updates.notify("progress")  # straight from a sync view: no model, no transaction
    return JsonResponse(state)

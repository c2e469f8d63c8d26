"""A Django 5 project served by uvicorn with refetch's endpoint next to it (docs/frameworks.md).

    DJANGO_SETTINGS_MODULE=examples.django_app.settings .venv/bin/python -m django migrate
    DJANGO_SETTINGS_MODULE=examples.django_app.settings \
        .venv/bin/uvicorn examples.django_app.asgi:application
"""

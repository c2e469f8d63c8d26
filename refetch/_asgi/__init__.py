"""The ASGI apps: the stream endpoint with its request reader, ``mount`` in front of an
app's middleware, and the ``Refetch-Cursor`` header middleware."""

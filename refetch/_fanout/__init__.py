"""The fan-out: its port (``Sink`` and how a stream starts), the connections and their
registry, broadcasts and frames, and the writers (``send()`` by hand; ``uvicorn`` is the one
module that knows a server's internals)."""

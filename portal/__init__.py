"""portal: the refetch reference app, a small multi-tenant cloud portal.

`python -m portal` serves it; `python -m portal.simulator` serves the external APIs it polls.
The library (`refetch`) never imports this package.
"""

"""Harnesses for the Python snippets of docs/*.md and README.md (run by tests/test_docs.py).

A block marked ``<!-- snippet: harness=NAME -->`` runs between the ``setup(ns)`` and the
``check(ns)`` of the module ``tests/snippets/NAME.py`` (each optional, sync or async), in one
namespace ``ns``; ``teardown(ns)`` runs in any case. ``setup`` provides the names the snippet
takes for granted (an app's session, a started service), ``check`` uses what it defined as a
reader would, and fails if it does not work.
"""

"""A cron job or a Celery task: publish one update and exit (docs/frameworks.md).

    .venv/bin/python -m examples.notify redis://127.0.0.1:6379/0 projects 42

In a Celery worker keep one Publisher per worker process (module level is fine: after
the prefork pool forks, each child opens its own connection on first use).
"""

from __future__ import annotations

import sys

from refetch import Publisher


def main(argv: list[str]) -> int:
    if len(argv) not in (2, 3):
        print("usage: python -m examples.notify BACKEND_URL TYPE [KEY]", file=sys.stderr)
        return 2
    url, type_, *key = argv
    with Publisher(url) as publisher:
        cursor = publisher.notify(type_, key=key[0] if key else None)
    print(cursor)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

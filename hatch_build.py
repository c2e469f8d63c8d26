"""The package index page: README.md with its relative links made absolute.

README.md is read in two places: in the repository, where ``docs/scaling.md`` and the
screenshot resolve next to it, and on the package index, where they do not. The README keeps
relative links (they work in every checkout and fork); this hook rewrites them for the
package's metadata against the ``Source`` URL of ``[project.urls]``, the one place the
repository's address is written.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from hatchling.metadata.plugin.interface import MetadataHookInterface

# ](target) of a link or an image; the target is kept when it has a scheme or is an anchor.
_LINK = re.compile(r"(?P<bang>!?)\[(?P<text>[^\]]*)\]\((?P<target>[^)\s]+)\)")


def absolute_links(markdown: str, repository: str, branch: str = "main") -> str:
    base = repository.rstrip("/")

    def rewrite(match: re.Match[str]) -> str:
        target = match["target"]
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I) or target.startswith("#"):
            return match[0]
        # Images must be the file itself; links may show the rendered page.
        kind = "raw" if match["bang"] else "blob"
        return f"{match['bang']}[{match['text']}]({base}/{kind}/{branch}/{target.lstrip('./')})"

    return _LINK.sub(rewrite, markdown)


class ReadmeHook(MetadataHookInterface):
    def update(self, metadata: dict[str, Any]) -> None:
        repository = metadata["urls"]["Source"]
        text = (Path(self.root) / "README.md").read_text(encoding="utf-8")
        metadata["readme"] = {
            "content-type": "text/markdown",
            "text": absolute_links(text, repository),
        }

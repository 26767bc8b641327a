"""The page's files, shipped inside the package and held in memory: a fixed table, so no request path
ever reaches the filesystem."""

from __future__ import annotations

import html
from importlib import resources

from skinedge.classifier import DISCLAIMER

#: URL path -> (file in skinedge/serve/web/, content type).
FILES = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/index.html": ("index.html", "text/html; charset=utf-8"),
    "/static/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/static/style.css": ("style.css", "text/css; charset=utf-8"),
    "/static/favicon.svg": ("favicon.svg", "image/svg+xml"),
    "/favicon.ico": ("favicon.svg", "image/svg+xml"),  # what browsers ask for when a page names no icon
}
#: Replaced in index.html by the library's not-a-diagnosis notice (one text for the CLI, API and page).
DISCLAIMER_MARK = "<!--DISCLAIMER-->"


def load_static() -> dict[str, tuple[bytes, str]]:
    """Read the page's files once; the notice goes into the HTML itself, so it shows even without script."""
    folder = resources.files("skinedge.serve") / "web"
    pages: dict[str, tuple[bytes, str]] = {}
    for url, (name, content_type) in FILES.items():
        text = (folder / name).read_text(encoding="utf-8")
        if name == "index.html":
            if DISCLAIMER_MARK not in text:
                raise RuntimeError(f"skinedge/serve/web/{name} lacks {DISCLAIMER_MARK}")
            text = text.replace(DISCLAIMER_MARK, html.escape(DISCLAIMER))
        pages[url] = (text.encode("utf-8"), content_type)
    return pages

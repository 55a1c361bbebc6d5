"""The web UI's first page, gzipped: everything `frontend/dist/index.html` makes the browser fetch
before the app can draw (the page, its entry scripts, preloaded modules and stylesheets).

Prints each file's raw and gzipped size and the total; exits 1 when the total is over the budget
(500 kB gzipped). Run after the build (`make setup` builds the UI):

    .venv/bin/python -m bench.frontend_bundle [--dist frontend/dist] [--budget-kb 500]
"""

from __future__ import annotations

import argparse
import gzip
import sys
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

from runtune.settings import REPO_ROOT

BUDGET_BYTES = 500 * 1000


class _FirstPageAssets(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.paths: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "script" and values.get("src"):
            self.paths.append(values["src"] or "")
        elif tag == "link" and values.get("rel") in ("stylesheet", "modulepreload") and values.get("href"):
            self.paths.append(values["href"] or "")


@dataclass(frozen=True)
class Asset:
    name: str
    raw: int
    gzipped: int


def first_page(dist: Path) -> list[Asset]:
    """index.html and every local file it loads, with their gzipped sizes (level 9, as servers do)."""
    index = dist / "index.html"
    html = index.read_bytes()
    parser = _FirstPageAssets()
    parser.feed(html.decode())
    assets = [Asset("index.html", len(html), len(gzip.compress(html, 9)))]
    for path in parser.paths:
        if "://" in path:
            continue  # nothing of the first page comes from elsewhere; a CDN file would not count here
        data = (dist / path.lstrip("/")).read_bytes()
        assets.append(Asset(path, len(data), len(gzip.compress(data, 9))))
    return assets


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dist", type=Path, default=REPO_ROOT / "frontend" / "dist")
    parser.add_argument("--budget-kb", type=float, default=BUDGET_BYTES / 1000)
    args = parser.parse_args()
    assets = first_page(args.dist)
    for asset in assets:
        print(f"{asset.name:48} {asset.raw / 1000:9.1f} kB {asset.gzipped / 1000:9.1f} kB gzipped")
    total = sum(asset.gzipped for asset in assets)
    budget = args.budget_kb * 1000
    print(f"{'first page':48} {sum(a.raw for a in assets) / 1000:9.1f} kB {total / 1000:9.1f} kB gzipped")
    print(f"budget {budget / 1000:.0f} kB gzipped: {'ok' if total <= budget else 'OVER'}")
    sys.exit(0 if total <= budget else 1)


if __name__ == "__main__":
    main()

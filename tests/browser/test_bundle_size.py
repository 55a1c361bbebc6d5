"""The web UI's first page stays under 500 kB gzipped, measured on the real production build."""

from __future__ import annotations

from pathlib import Path

from bench.frontend_bundle import BUDGET_BYTES, first_page


def test_first_page_is_under_budget(built_ui: Path) -> None:
    assets = first_page(built_ui)
    names = [asset.name for asset in assets]
    # The page, its entry script and its stylesheet: the measurement sees what the browser loads.
    assert any(name.endswith(".js") for name in names) and any(name.endswith(".css") for name in names), names
    total = sum(asset.gzipped for asset in assets)
    assert total < BUDGET_BYTES, f"first page is {total / 1000:.1f} kB gzipped: {assets}"

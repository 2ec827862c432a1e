"""results.png: median req/s per implementation, one bar per route."""

from __future__ import annotations

from pathlib import Path

from benchmarks.cases import ROUTES, SPREAD
from benchmarks.stats import Row


def plot(rows: list[Row], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    impls: list[str] = []
    for row in rows:
        if row.impl.name not in impls:
            impls.append(row.impl.name)
    routes = (*ROUTES, SPREAD)
    width = 0.8 / len(routes)
    fig, ax = plt.subplots(figsize=(max(8.0, 1.1 * len(impls) + 2), 6))
    for k, route in enumerate(routes):
        xs: list[float] = []
        ys: list[float] = []
        for i, name in enumerate(impls):
            found = next((r for r in rows if r.impl.name == name and r.route == route), None)
            if found is not None:
                xs.append(i + (k - (len(routes) - 1) / 2) * width)
                ys.append(found.rps)
        ax.bar(xs, ys, width=width, label=route)
    ax.set_xticks(range(len(impls)))
    ax.set_xticklabels(impls, rotation=35, ha="right")
    for label in ax.get_xticklabels():
        if label.get_text().startswith("coatcheck"):
            label.set_fontweight("bold")
    ax.set_ylabel("requests/s (median)")
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(title="route")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)

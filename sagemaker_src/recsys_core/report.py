"""Readable reports: a markdown file with tables and matplotlib plots (Agg backend, no display)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def bar_chart(path: Path, labels: Sequence[str], values: Sequence[float], title: str, xlabel: str) -> Path:
    """Horizontal bars, best at the top; long model names stay readable."""
    fig, ax = plt.subplots(figsize=(8, 0.4 * len(labels) + 1.5))
    order = sorted(range(len(values)), key=lambda i: values[i])
    ax.barh([labels[i] for i in order], [values[i] for i in order], color="#4c72b0")
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def grouped_bars(path: Path, metrics: Sequence[str], series: dict[str, Sequence[float]], title: str) -> Path:
    fig, ax = plt.subplots(figsize=(9, 4))
    width = 0.8 / max(len(series), 1)
    for j, (name, vals) in enumerate(series.items()):
        ax.bar([i + j * width for i in range(len(metrics))], vals, width, label=name)
    ax.set_xticks([i + width * (len(series) - 1) / 2 for i in range(len(metrics))], metrics, rotation=20)
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def markdown_table(rows: list[dict[str, Any]], columns: Sequence[str]) -> str:
    def fmt(v: Any) -> str:
        if v is None:
            return ""
        if isinstance(v, float):
            return f"{v:.4f}"
        return str(v).replace("|", "/")

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(fmt(r.get(c)) for c in columns) + " |" for r in rows]
    return "\n".join(lines)

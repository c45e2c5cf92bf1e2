"""PNG figures from the report dicts of ``jee.policy.sweeps`` (matplotlib, Agg backend).

``plot_accuracy_vs_cost``: one curve per policy family, the oracle and every single exit as
marked points. ``plot_exit_histograms``: the fraction of examples leaving at each exit, one
panel per report row.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)


def plot_accuracy_vs_cost(
    report: dict[str, Any], path: str | Path, split: str = "test", title: str | None = None
) -> Path:
    """Accuracy against mean relative cost on ``split`` for a ``policy_report`` dict."""
    fig, ax = plt.subplots(figsize=(7, 5))
    for family, curve in report.get("families", {}).items():
        rows = sorted(curve[split], key=lambda r: r["relative_cost"])
        ax.plot([r["relative_cost"] for r in rows], [r["accuracy"] for r in rows],
                marker=".", label=family)
    # Early exits have single exits; a cascade has single models (labelled by name).
    kind = "single_models" if "single_models" in report else "single_exits"
    singles = report.get(kind, {}).get(split, [])
    if singles:
        ax.scatter([r["relative_cost"] for r in singles], [r["accuracy"] for r in singles],
                   marker="s", color="black", zorder=3, label=kind.replace("_", " "))
        for r in singles:
            label = r["params"].get("model") or f"exit {r['params']['exit']}"
            ax.annotate(label, (r["relative_cost"], r["accuracy"]),
                        textcoords="offset points", xytext=(4, -10), fontsize=7)
    if "eenet_default" in report:
        r = report["eenet_default"][split]
        ax.scatter([r["relative_cost"]], [r["accuracy"]], marker="D", color="tab:red",
                   zorder=3, label=f"eenet T={r['params']['threshold']:g}")
    if "oracle" in report:
        r = report["oracle"][split]
        ax.scatter([r["relative_cost"]], [r["accuracy"]], marker="*", s=160, color="gold",
                   edgecolors="black", zorder=4, label="oracle")
    ax.set_xlabel("mean relative cost")
    ax.set_ylabel("accuracy")
    ax.set_title(title or f"accuracy vs cost ({split})")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_exit_histograms(
    rows: Sequence[dict[str, Any]], path: str | Path, labels: Sequence[str] | None = None,
    xlabel: str = "exit", ticks: Sequence[str] | None = None,
) -> Path:
    """Bar chart of ``exit_fractions`` per report row (one panel each); a cascade's rows
    hold path fractions (``xlabel="path"``, ``ticks`` naming the paths)."""
    if not rows:
        raise ValueError("no rows to plot")
    labels = labels or [_label(r) for r in rows]
    cols = min(3, len(rows))
    nrows = math.ceil(len(rows) / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(4 * cols, 3 * nrows), squeeze=False)
    for ax, row, label in zip(axes.flat, rows, labels, strict=False):
        fractions = row["exit_fractions"]
        ax.bar(range(len(fractions)), fractions)
        if ticks:
            ax.set_xticks(range(len(fractions)), ticks, rotation=30, ha="right", fontsize=7)
        else:
            ax.set_xticks(range(len(fractions)))
        ax.set_ylim(0, 1)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("fraction of examples")
        ax.set_title(f"{label}\nacc {row['accuracy']:.3f}, cost {row['relative_cost']:.3f}",
                     fontsize=9)
    for ax in list(axes.flat)[len(rows):]:
        ax.axis("off")
    return _save(fig, path)


def _label(row: dict[str, Any]) -> str:
    params = row.get("params", {})
    for key in ("lambda", "quantile", "threshold", "exit"):
        if key in params and not isinstance(params[key], list):
            return f"{row['name']} {key}={params[key]:.3g}"
    return row["name"]


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path

"""Metric charts for the evidence post and the postmortem (PNG bytes, rendered without a display).

The caller stores them through ObjectStoragePath (`incident_ops.artifacts`): no worker's disk."""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Mapping
from typing import Any

__all__ = ["metrics_chart"]


def metrics_chart(series: Mapping[str, Mapping[str, Any]], *, title: str, tz: dt.tzinfo) -> bytes:
    """One small panel per series (x: time in `tz`), as PNG bytes; empty series say so."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    items = list(series.items()) or [("none", {"label": "no metrics", "timestamps": [], "values": []})]
    columns = 2
    rows = (len(items) + columns - 1) // columns
    figure, axes = plt.subplots(rows, columns, figsize=(10, 2.4 * rows), squeeze=False)
    for index, (series_id, data) in enumerate(items):
        axis = axes[index // columns][index % columns]
        times = [dt.datetime.fromisoformat(str(t).replace("Z", "+00:00")).astimezone(tz) for t in data.get("timestamps") or []]
        values = list(data.get("values") or [])
        axis.set_title(str(data.get("label") or series_id), fontsize=9)
        if times and values:
            axis.plot(times, values, linewidth=1.2)
            axis.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M", tz=tz))
        else:
            axis.text(0.5, 0.5, "no data", ha="center", va="center", transform=axis.transAxes)
        axis.tick_params(labelsize=7)
        if data.get("unit"):
            axis.set_ylabel(str(data["unit"]), fontsize=7)
    for index in range(len(items), rows * columns):
        axes[index // columns][index % columns].axis("off")
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90)
    plt.close(figure)
    return buffer.getvalue()

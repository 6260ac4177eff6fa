"""What a person reads: comparison reports and figures.

* `comparison`: a comparison report (Markdown, self-contained HTML, JSON, figures)
  from values or from the results store;
* `paired`: the paired report (arms matched by trial, seed or fold), from values or
  from the results store;
* `selection`: `where` filters, grouping and pairing of store rows for a report;
* `figures`: image grids, attribution overlays, training curves, confusion matrices;
* `index_html`: the `index.html` of a run folder and of the demo (claims, verdicts,
  figures, links to the reports).
"""

from shared.report.comparison import report_from_store, write_comparison_report
from shared.report.paired import paired_report_from_store, write_paired_report
from shared.report.selection import (
    ROW_FIELDS,
    parse_where,
    select_paired,
    select_values,
    WhereExpression,
)
from shared.report.figures import (
    overlay,
    plot_history,
    resize_bilinear,
    save_confusion_matrix,
    save_image_grid,
    save_overlay_grid,
    save_paired_differences,
)

__all__ = [
    "ROW_FIELDS",
    "WhereExpression",
    "overlay",
    "paired_report_from_store",
    "parse_where",
    "plot_history",
    "report_from_store",
    "resize_bilinear",
    "save_confusion_matrix",
    "save_image_grid",
    "save_overlay_grid",
    "save_paired_differences",
    "select_paired",
    "select_values",
    "write_comparison_report",
    "write_paired_report",
]

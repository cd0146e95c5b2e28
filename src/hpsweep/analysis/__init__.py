"""Analysis: TensorBoard extraction, tables, statistics, figures, report, tracking."""

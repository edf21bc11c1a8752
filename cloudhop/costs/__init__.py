"""Costs: what retrains cost, recorded per run in the store and reported by cloud, model or month.

Pricing one attempt is cloudhop.clouds.cost (pure); this package stores and reads the records
(`records`) and builds the report, its CSV/Parquet rows and its chart (`report`).
"""
from cloudhop.costs.records import (CostRecordError, cost_key, read_costs, read_throughput, record_models,
                                    write_cost, write_throughput)
from cloudhop.costs.report import COLUMNS, GROUPS, attempt_rows, cost_chart_png, totals

__all__ = ["CostRecordError", "cost_key", "read_costs", "read_throughput", "record_models", "write_cost",
           "write_throughput", "COLUMNS", "GROUPS", "attempt_rows", "cost_chart_png", "totals"]

"""Turn result files into decisions: aggregation, Pareto frontiers and recommendations.

Works on any mix of our result files and the PEFT suite's published ones (both normalized by
`peftbench.engine.results.summarize`).
The unit of comparison is a *configuration*: one technique with
one set of hyper-parameters, whose seeds are aggregated into mean ± 95% confidence interval.
A *technique* view keeps, per technique, the configuration that is best on validation, so that
choosing never looks at the test split.

Frontiers and recommendations are computed within one (task, base model) group: numbers from
different tasks or models are not comparable.

The data flows through the submodules in one direction (each imports only those before it):

- `metrics`: the measured quantities (`METRICS`), parsing metric names, formatting values;
- `stats`: intervals from per-item outcomes and paired tests between techniques;
- `aggregation`: loading result files, pooling seeds into configurations, choosing a
  technique's best configuration;
- `filters`: the filter grammar and capability requirements;
- `pareto`: Pareto frontiers within noise, and the summary table;
- `caveats`: what the scores cannot tell (a tiny test split, every technique tied);
- `answers`: the test answers saved beside each result, for the wrong ones shown;
- `recommendation`: the best technique under constraints, with the reasons for exclusions;
- `suite_scores`: the GLUE and SuperGLUE scores of a technique whose runs cover a suite.

Beside them, readers of the same data: `report` and `figures` (HTML, PNG and Markdown), with
`suite_tables` (a suite's technique × task table), `app`
(the Gradio dashboard) and `space` (that dashboard as a Hugging Face Space folder).

Everything public is re-exported here, so ``from peftbench import analysis as an`` is enough.
"""

from peftbench.analysis.aggregation import (
    Aggregate,
    ResultSet,
    aggregate,
    choose_best_config,
    config_key,
    load_results,
    mean_ci,
    reported_candidates,
    technique_name,
)
from peftbench.analysis.filters import (
    CAPABILITY_WORDS,
    CapabilityCache,
    Clause,
    apply_filter,
    capability_check,
    check_clause,
    lookup_capabilities,
    parse_filter,
    parse_must,
    parse_quantity,
)
from peftbench.analysis.metrics import (
    METRICS,
    Metric,
    MetricSpec,
    format_value,
    get_metric,
    last_valid_score,
    parse_metric_spec,
)
from peftbench.analysis.pareto import (
    DOMINATED,
    FRONTIER,
    MISSING,
    NEAR,
    dominated_by_any,
    frontier_status,
    non_dominated,
    pareto_frontier,
    summary_rows,
)
from peftbench.analysis.recommendation import Recommendation, describe, recommend
from peftbench.analysis.suite_scores import (
    SUITES,
    SuiteScore,
    SuiteStanding,
    missing_tasks,
    suite_score,
    suite_scores,
    suite_standings,
    suite_tasks,
    task_scores,
)

__all__ = [
    # metrics
    "METRICS",
    "Metric",
    "MetricSpec",
    "format_value",
    "get_metric",
    "last_valid_score",
    "parse_metric_spec",
    # aggregation
    "Aggregate",
    "ResultSet",
    "aggregate",
    "choose_best_config",
    "config_key",
    "load_results",
    "mean_ci",
    "reported_candidates",
    "technique_name",
    # filters
    "CAPABILITY_WORDS",
    "CapabilityCache",
    "Clause",
    "apply_filter",
    "capability_check",
    "check_clause",
    "lookup_capabilities",
    "parse_filter",
    "parse_must",
    "parse_quantity",
    # pareto
    "DOMINATED",
    "FRONTIER",
    "MISSING",
    "NEAR",
    "dominated_by_any",
    "frontier_status",
    "non_dominated",
    "pareto_frontier",
    "summary_rows",
    # recommendation
    "Recommendation",
    "describe",
    "recommend",
    # suite scores (GLUE, SuperGLUE)
    "SUITES",
    "SuiteScore",
    "SuiteStanding",
    "missing_tasks",
    "suite_score",
    "suite_scores",
    "suite_standings",
    "suite_tasks",
    "task_scores",
]

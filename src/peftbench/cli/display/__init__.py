"""What the verbs print: the Rich consoles, tables and progress displays they share.

Verb modules handle arguments and call the engine; the code that turns what comes back into
tables, bars and summary lines is here, one module per concern: `tables` (the `Grid` every verb
prints), `tournament` (run and tournament), `methods`, `reports` (census and export).
"""

# stderr: the run and tournament messages share the engine's console with its progress bars
from peftbench.cli.display.methods import (
    METHOD_COLUMNS,
    count_with_progress,
    methods_grid,
    print_methods_table,
    quiet_third_party,
)
from peftbench.cli.display.reports import census_progress, print_census_report, print_export_report
from peftbench.cli.display.tables import Grid, err_console, print_grid
from peftbench.cli.display.tournament import (
    METRICS_SHOWN,
    TournamentDisplay,
    plan_summary,
    plan_table,
    results_table,
    run_summary_line,
    tournament_verdict,
)
from peftbench.engine.progress import console

__all__ = [
    "METHOD_COLUMNS",
    "METRICS_SHOWN",
    "Grid",
    "TournamentDisplay",
    "census_progress",
    "console",
    "count_with_progress",
    "err_console",
    "methods_grid",
    "plan_summary",
    "plan_table",
    "print_census_report",
    "print_export_report",
    "print_grid",
    "print_methods_table",
    "quiet_third_party",
    "results_table",
    "run_summary_line",
    "tournament_verdict",
]

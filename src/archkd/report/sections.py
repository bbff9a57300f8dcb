"""Built-in report sections, registered in report order when ``archkd.report`` is imported.

Each returns ``None`` when the results have none of its data; each copes with partial or odd data
(missing keys, ``None`` values, wrong types) by leaving that piece out rather than failing.

The sections live in ``sections_run``, ``sections_search``, ``search_quality`` (the fidelity check and a
multi-objective front) and ``sections_timeline``; this module imports them in that order, because registration order
is report order (``before=`` places the search's deliverables and the epoch curves), and re-exports their names.
"""
from __future__ import annotations

from .section_helpers import STATES, best_trial_number
from .sections_run import final_section, generic_pool_section, summary_section
from .sections_search import (acc_vs_params_section, budget_section, family_section, finalists_section,
                              progress_section, trials_section)
from .search_quality import fidelity_section, front_section
from .sections_timeline import curves_section, epoch_curves_section, timings_section

__all__ = ["STATES", "best_trial_number", "summary_section", "generic_pool_section", "final_section",
           "trials_section", "progress_section", "acc_vs_params_section", "budget_section", "finalists_section",
           "family_section", "fidelity_section", "front_section", "timings_section", "curves_section",
           "epoch_curves_section"]

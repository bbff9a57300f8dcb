"""Run reports: ``results.json`` and a self-contained ``report.html``.

Contract
--------
``write_results(run_dir, results) -> Path``
    Writes ``run_dir/results.json`` (created if needed) atomically: a temporary file in the same folder,
    then ``os.replace``. The dict is first made JSON-safe (``to_jsonable``): numpy/torch scalars -> Python
    numbers, arrays/tensors -> lists, ``Path`` -> str, NaN/±inf -> null, tuples/sets -> lists, unknown
    objects -> ``str``. Output is strict JSON with ``indent=2``.
``write_report(run_dir, results) -> Path``
    Writes ``run_dir/report.html`` atomically. The page has no external resources: CSS is inline and plots
    are base64 PNG ``<img>`` tags drawn with matplotlib's Agg canvas (pyplot is never used). Every string
    from ``results`` is HTML-escaped. ``render_report(results) -> str`` returns the same page as a string.
``register_section(name, *, title=None, before=None)``
    Decorator registering ``fn(results: dict) -> str | None``: an HTML fragment shown under an ``<h2>title``
    heading, or ``None`` when the run has no data for it. ``results`` given to a section is the JSON-safe
    copy (what ``results.json`` holds). Sections render in registration order (or just before ``before``);
    registering an existing name replaces it in place. A section that raises is shown as an error box and
    reported with ``warnings.warn``; the rest of the report still renders. The module that registers a
    section must be imported before ``write_report`` runs. Helpers for fragments: ``archkd.report.fmt``
    (escaping, number formats, tables) and ``archkd.report.plots`` (``line_plot``, ``figure_img``).

Built-in sections, in order: ``summary``, ``generic teacher pool``, ``final student``, ``finalists``, ``family``,
``fidelity check``, ``pareto front``, ``trials table``, ``search progress``, ``accuracy-vs-params plot`` (accuracy
against the search's own cost: latency when that is the budget or an objective), ``budget``, ``timings``,
``epoch curves``, ``curves``.

Results schema (every key optional except ``"name"``; sections skip what is absent)::

    name, created, command, config{...}
    dataset{name, num_classes, input_shape, train, val, test}
    teacher{name, params, val_acc, test_acc, pool[{index, config, params, probability, supernet_val_acc,
            checkpoint}]}   (pool: a generic teacher's students)
    budget{max_params, max_flops, max_latency_ms, latency_runtime, latency_source: measured|predicted}
    search{space, sampler, n_trials, fidelity{epochs, data_fraction}, storage, best_trial,
           pareto{cost, trials[...], measured_ms{trial number: ms}}}   (measured_ms: when latency was predicted)
    trials[{number, state: COMPLETE|PRUNED|FAIL|INFEASIBLE, config{...}, params, flops, latency_ms,
            val_acc, reward, reason, seconds}]
    top_k[{trial, search_reward, val_acc, test_acc, final_reward, params, flops, latency_ms, checkpoint}]
    final{spec{...}, params, flops, macs, latency{runtime: {median_ms, iqr_ms}}, val_acc, test_acc, epochs,
          history[{epoch, train_loss, val_acc, ...}]}
    export{onnx, torchscript, max_abs_diff{onnx, torchscript}}
    timings{teacher_s, search_s, final_s, total_s}
    curves{title, x[...], series{name: [...]}, xlabel?, ylabel?}   (or a list of such dicts)
    metrics[{run, epoch, train_loss, val_acc, lr, images_per_s, seconds, losses{...}}]   (the run's metrics.csv)

Accuracies are fractions in [0, 1] (shown as percentages). A latency may be a number of ms, one measurement
(``median_ms``, ``runtime``, ...) or ``{runtime: measurement}``: cells show its median and runtime. When
``budget.latency_source`` (or ``config.budget.latency_source``) is ``predicted`` the report says so and sets the
Pareto set's re-measured latencies beside the predicted ones. The best trial is ``search.best_trial`` or, when
absent, the COMPLETE trial with the highest ``val_acc``.
"""
from __future__ import annotations

from . import sections as _builtin_sections  # noqa: F401  (registers the built-in sections)
from .jsonsafe import RESULTS_FILE, to_jsonable, write_results
from .registry import get_sections, register_section, section_names, unregister_section
from .render import REPORT_FILE, render_report, write_report

__all__ = [
    "write_results",
    "write_report",
    "render_report",
    "register_section",
    "unregister_section",
    "section_names",
    "get_sections",
    "to_jsonable",
    "RESULTS_FILE",
    "REPORT_FILE",
]

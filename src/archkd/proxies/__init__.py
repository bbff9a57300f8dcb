"""archkd.proxies — zero-cost estimates of how well a student will distil, computed at initialisation.

Why: on 2 CPU cores a CIFAR-10 search trial costs minutes and its low-fidelity accuracy may rank noise. A proxy scores
a candidate from one forward/backward pass on a few batches, so a search can rank hundreds and train only the best.

Contract:
- ``register_proxy(name)`` / ``PROXIES``: ``fn(student, teacher, batches) -> float``, higher = predicted better KD
  accuracy. ``student`` is freshly initialised; ``teacher`` is the reference network (``ProxyTeacher``: the trained
  teacher, or a freshly initialised copy of its architecture, as DisWOT uses); ``batches`` are ``(x, y)`` pairs of
  normalised training images. A new proxy is one function plus its registry entry.
- Built in: ``diswot`` (= ``diswot_semantic`` + ``diswot_relation``), ``grad_norm``, ``params``, ``flops``.
- ``proxy_batches(data, n, batch_size, seed)``: the fixed sample every candidate is scored on.
- ``ProxyScorer(names, teacher_module, data, ...)``: scores specs (``scorer(spec) -> dict[name, score]``), seeding
  each student's initialisation by the spec, so a score is a function of the architecture alone.
- ``rank_correlation(a, b) -> RankCorrelation``: Kendall τ and Spearman ρ (SciPy).
"""
from archkd.proxies.zero_cost import (PROXIES, ProxyScorer, RankCorrelation, proxy_batches, rank_correlation,
                                      register_proxy)

__all__ = ["PROXIES", "ProxyScorer", "RankCorrelation", "proxy_batches", "rank_correlation", "register_proxy"]

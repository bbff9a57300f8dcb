"""archkd.proxies — zero-cost estimates of how well a student will distil, computed at initialisation.

Why: on 2 CPU cores a CIFAR-10 search trial costs minutes and its low-fidelity accuracy may rank noise. A proxy scores
a candidate from one forward/backward pass on a few batches, so a search can rank hundreds and train only the best.

Contract:
- ``register_proxy(name)`` / ``PROXIES``: ``fn(probe) -> float``, higher = predicted better KD accuracy. A ``Probe``
  holds the freshly built student, the fixed batches, the input shape, the class count and the reference teacher's
  signature (the trained teacher, or its architecture, re-initialised as DisWOT does). A new proxy is one function
  plus its registry entry.
- Built in: ``diswot`` (DisWOT, CVPR 2023: ``diswot_semantic`` + ``diswot_relation`` on networks re-initialised with
  ``gaussian_reinit``), ``diswot_classgrad`` (its width-free variant), ``grad_norm``, ``params``, ``flops``.
- ``proxy_batches(data, n, batch_size, seed)``: the fixed sample every candidate is scored on.
- ``ProxyScorer(names, teacher_module, data, ...)``: scores specs (``scorer(spec) -> dict[name, score]``), seeding
  each student's initialisation by the spec, so a score is a function of the architecture alone.
- ``rank_correlation(a, b) -> RankCorrelation``: Kendall τ and Spearman ρ (SciPy).
"""
from archkd.proxies.zero_cost import (PROXIES, ProxyScorer, RankCorrelation, gaussian_reinit, proxy_batches,
                                      rank_correlation, register_proxy)

__all__ = ["PROXIES", "ProxyScorer", "RankCorrelation", "gaussian_reinit", "proxy_batches", "rank_correlation",
           "register_proxy"]

"""AKD's RL controller: an LSTM policy emitting one token per architecture decision, as an Optuna sampler.

Why an Optuna sampler whose state is rebuilt from the study: the policy after n finished trials is a deterministic
function of (seed, those trials' tokens and rewards in the order they finished). ``AKDSampler`` replays the study's
finished trials in completion order, updating the policy once per full batch, so a restarted search, or another worker
attached to the same storage, holds exactly the policy an uninterrupted run would. Pending trials (RUNNING on any
worker, or queued for retry) are not yet observed: the policy learns from them once they finish, in the order they
finish, so a slow trial on one worker never stalls the others' policy (with one worker, completion order is trial
order and a resumed search proposes exactly the uninterrupted run's architectures). Samplers never train students:
rewards come from the study.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import optuna
import torch
import torch.nn as nn
from optuna.distributions import BaseDistribution, IntDistribution
from optuna.trial import TrialState

from archkd.errors import ArchkdError
from archkd.search.samplers import first_feasible, sample_index, set_proposer
from archkd.spaces import CategoricalDim, IntDim, SearchSpace


class Controller(nn.Module):
    """LSTM policy over a fixed sequence of categorical decisions (MnasNet/ENAS style)."""

    def __init__(self, num_choices: list[int], hidden: int = 64, seed: int = 0, tanh_constant: float = 2.5) -> None:
        super().__init__()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.start = nn.Parameter(torch.zeros(1, hidden))
            self.lstm = nn.LSTMCell(hidden, hidden)
            self.embed = nn.ModuleList(nn.Embedding(n, hidden) for n in num_choices)
            self.heads = nn.ModuleList(nn.Linear(hidden, n) for n in num_choices)
        for head in self.heads:  # start from the uniform policy: every architecture equally likely
            nn.init.zeros_(head.weight)
            nn.init.zeros_(head.bias)
        self.num_choices = list(num_choices)
        self.tanh_constant = tanh_constant

    def _walk(self, tokens: torch.Tensor | None, n: int, generator: torch.Generator | None
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.start.expand(n, -1)
        h = torch.zeros_like(x)
        c = torch.zeros_like(x)
        out, logp, ent = [], torch.zeros(n), torch.zeros(n)
        for i, head in enumerate(self.heads):
            h, c = self.lstm(x, (h, c))
            logits = head(h)
            if self.tanh_constant:  # ENAS's bounded logits: no decision can become certain too early
                logits = self.tanh_constant * torch.tanh(logits)
            dist = torch.distributions.Categorical(logits=logits)
            tok = tokens[:, i] if tokens is not None else torch.multinomial(dist.probs, 1, generator=generator)[:, 0]
            logp = logp + dist.log_prob(tok)
            ent = ent + dist.entropy()
            out.append(tok)
            x = self.embed[i](tok)
        return torch.stack(out, 1), logp, ent

    @torch.no_grad()
    def sample(self, generator: torch.Generator) -> list[int]:
        tokens, _, _ = self._walk(None, 1, generator)
        return tokens[0].tolist()

    def log_prob(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Log-probability and entropy (summed over decisions) of each token sequence in the batch."""
        _, logp, ent = self._walk(tokens, tokens.shape[0], None)
        return logp, ent


@dataclass
class PolicyConfig:
    """Controller hyper-parameters. ``baseline``: "batch" (mean reward of the update's batch), "ema" (moving
    average over past batches) or "auto" (batch for PPO, moving average for REINFORCE)."""

    algorithm: str = "ppo"
    lr: float = 0.005
    entropy_weight: float = 1e-3
    baseline: str = "auto"
    baseline_decay: float = 0.5
    ppo_clip: float = 0.2
    ppo_epochs: int = 4
    batch_size: int = 8
    hidden: int = 64
    tanh_constant: float = 2.5


class PolicyTrainer:
    """PPO (clip 0.2) or REINFORCE with a moving-average reward baseline and an entropy bonus."""

    def __init__(self, controller: Controller, cfg: PolicyConfig) -> None:
        if cfg.algorithm not in ("ppo", "reinforce"):
            raise ArchkdError(f"unknown controller algorithm '{cfg.algorithm}'", "use ppo or reinforce")
        if cfg.baseline not in ("auto", "batch", "ema"):
            raise ArchkdError(f"unknown controller baseline '{cfg.baseline}'", "use auto, batch or ema")
        self.controller, self.cfg = controller, cfg
        self.opt = torch.optim.Adam(controller.parameters(), lr=cfg.lr)
        self.baseline: float | None = None

    def update(self, tokens: list[list[int]], rewards: list[float]) -> dict:
        tok = torch.tensor(tokens, dtype=torch.long)
        r = torch.tensor(rewards, dtype=torch.float32)
        if self.baseline is None:
            self.baseline = float(r.mean())
        kind = self.cfg.baseline if self.cfg.baseline != "auto" else ("batch" if self.cfg.algorithm == "ppo" else "ema")
        adv = r - (float(r.mean()) if kind == "batch" else self.baseline)
        if len(rewards) > 1 and float(r.std()) > 1e-8:  # scale-free updates whatever the reward's units
            adv = adv / r.std()
        self.baseline = self.cfg.baseline_decay * self.baseline + (1 - self.cfg.baseline_decay) * float(r.mean())
        with torch.no_grad():
            old_logp, _ = self.controller.log_prob(tok)
        steps = self.cfg.ppo_epochs if self.cfg.algorithm == "ppo" else 1
        for _ in range(steps):
            logp, ent = self.controller.log_prob(tok)
            if self.cfg.algorithm == "ppo":
                ratio = torch.exp(logp - old_logp)
                clipped = torch.clamp(ratio, 1 - self.cfg.ppo_clip, 1 + self.cfg.ppo_clip)
                pg = -torch.min(ratio * adv, clipped * adv).mean()
            else:
                pg = -(adv * logp).mean()
            loss = pg - self.cfg.entropy_weight * ent.mean()
            self.opt.zero_grad()
            loss.backward()
            self.opt.step()
        return {"loss": float(loss.detach()), "baseline": self.baseline}


def _distribution(dim: Any) -> BaseDistribution:
    if isinstance(dim, (IntDim, CategoricalDim)) and dim.when is None:
        return dim.distribution()
    raise ArchkdError(f"the AKD controller cannot search dimension '{dim.name}' (continuous or conditional)",
                      "discretise it as a CategoricalDim, or search this space with random, tpe or gp")


def _choices(dist: BaseDistribution) -> list:
    if isinstance(dist, IntDistribution):
        return list(range(dist.low, dist.high + 1, dist.step))
    return list(dist.choices)


def trial_reward(t: optuna.trial.FrozenTrial) -> float | None:
    """The reward a finished trial contributes to the policy (None: it taught nothing, e.g. a crash)."""
    if "reward" in t.user_attrs:
        return float(t.user_attrs["reward"])
    if t.state == TrialState.COMPLETE and t.value is not None:
        return float(t.value)
    return None


class AKDSampler(optuna.samplers.BaseSampler):
    """Samples whole architectures from the LSTM policy; the policy is rebuilt from the study's history."""

    def __init__(self, space: SearchSpace, seed: int = 0, policy: PolicyConfig | None = None,
                 feasible: Callable[[dict], bool] | None = None, max_draws: int = 2000) -> None:
        self.seed = int(seed)
        self.policy_cfg = policy or PolicyConfig()
        self.feasible, self.max_draws = feasible, int(max_draws)
        self.dists = {d.name: _distribution(d) for d in space.dims()}
        self.names = list(self.dists)
        self.choices = [_choices(self.dists[n]) for n in self.names]
        self._fallback = optuna.samplers.RandomSampler(seed=seed)
        self.reset()

    def reset(self) -> None:
        self.controller = Controller([len(c) for c in self.choices], self.policy_cfg.hidden, self.seed,
                                     self.policy_cfg.tanh_constant)
        self.trainer = PolicyTrainer(self.controller, self.policy_cfg)
        self.consumed = 0  # how many history entries the policy has learned from
        self.seen: list[tuple[list[int], float]] = []
        self.updates = 0

    def tokens_of(self, params: dict) -> list[int] | None:
        try:
            return [self.choices[i].index(params[n]) for i, n in enumerate(self.names)]
        except (KeyError, ValueError):
            return None

    def history(self, study: optuna.Study) -> list[tuple[list[int], float]]:
        """Completed and pruned trials, in the order they finished (ties: trial number)."""
        done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
                if t.datetime_complete]  # a FAIL trial taught nothing: its retry carries the result
        out = []
        for t in sorted(done, key=lambda t: (t.datetime_complete, t.number)):
            reward = trial_reward(t)
            tokens = self.tokens_of(t.params)
            if reward is not None and tokens is not None:
                out.append((tokens, reward))
        return out

    def sync(self, study: optuna.Study) -> None:
        hist = self.history(study)
        bs = self.policy_cfg.batch_size
        if len(hist) < self.consumed or hist[:self.consumed] != self.seen:  # another study or a rewritten history
            self.reset()
        while len(hist) - self.consumed >= bs:
            chunk = hist[self.consumed:self.consumed + bs]
            self.trainer.update([c[0] for c in chunk], [c[1] for c in chunk])
            self.consumed += bs
            self.updates += 1
        self.seen = hist[:self.consumed]

    def infer_relative_search_space(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> dict:
        return dict(self.dists)

    def sample_relative(self, study: optuna.Study, trial: optuna.trial.FrozenTrial, search_space: dict) -> dict:
        if not search_space:
            return {}
        self.sync(study)
        set_proposer(study, trial, "model" if self.updates else "init")  # before the first update: the uniform policy
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + sample_index(study, trial))
        def draw(_k: int) -> dict:  # within the budget: redraw from the policy (milliseconds per candidate)
            tokens = self.controller.sample(g)
            return {n: self.choices[i][tok] for i, (n, tok) in enumerate(zip(self.names, tokens))}

        return first_feasible(draw, self.feasible, self.max_draws)

    def sample_independent(self, study: optuna.Study, trial: optuna.trial.FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        return self._fallback.sample_independent(study, trial, param_name, param_distribution)

    def info(self) -> dict:
        """What the controller did, for results.json: its batch and the policy updates behind its last proposal."""
        return {"batch_size": self.policy_cfg.batch_size, "policy_updates": self.updates}

    def advise(self, n_trials: int) -> str | None:
        """A warning when a search of ``n_trials`` trials leaves the controller too few policy updates to steer it:
        the policy learns from each batch of ``batch_size`` finished trials, and only later proposals use it."""
        bs = self.policy_cfg.batch_size
        updates = max(0, (n_trials - 1) // bs)
        if updates >= 2:
            return None
        return (f"the akd controller updates its policy once per {bs} finished trials, so {n_trials} trials give it "
                f"{updates} update(s) that steer a proposal: this search is close to random search — give "
                f"--n-trials {3 * bs} or more, or a smaller search.sampler_options.batch_size")

    def probability(self, params: dict) -> float:
        """Probability the current policy assigns to one architecture (for tests and reports)."""
        tokens = self.tokens_of(params)
        with torch.no_grad():
            logp, _ = self.controller.log_prob(torch.tensor([tokens]))
        return float(torch.exp(logp[0]))

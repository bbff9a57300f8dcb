"""``archkd family sample``: new members of a search's best generator (AutoKD's output is a family), optionally
distilled, added to the search run's results."""
from __future__ import annotations

import json

from archkd.config import Config
from archkd.device import seed_everything
from archkd.errors import ArchkdError
from archkd.search.finalise import trial_config
from archkd.spaces import create_space
from archkd.workflows.distill import distill
from archkd.workflows.inputs import prepare
from archkd.workflows.results import Family
from archkd.workflows.run import Log, mirrored, rewrite_run, start, verb


@verb("archkd family sample", owns=False)
def family_sample(cfg: Config, n: int = 5, train: bool = False, log: Log | None = print) -> Family:
    """AutoKD's output is a family: draw ``n`` new members of the best trial's generator (new graph seeds, the
    search's width scaling) from the search run ``cfg.run_dir``; with ``train``, distill each with the run's recipe
    (and the recipe values the search picked) and test it. Adds ``family`` to the run's results and report and
    returns it; members' checkpoints go to ``runs/<name>/family/NN/``."""
    from archkd.models import build_from_spec
    from archkd.report import RESULTS_FILE

    log = mirrored(log)
    run = start(cfg)
    try:
        results = json.loads((run / RESULTS_FILE).read_text())
    except (OSError, ValueError):
        raise ArchkdError(f"no search results in {run}", "give the run directory of an 'archkd search'") from None
    if results.get("command") != "archkd search" or not results.get("trials"):
        raise ArchkdError(f"{run} holds '{results.get('command')}' results, not a search's",
                          "give the run directory of an 'archkd search --method autokd'")
    s = results["search"]
    best = next(t for t in results["trials"] if t["number"] == s["best_trial"])
    space = create_space(cfg.search.space, recipe=cfg.search.recipe, **cfg.search.space_kwargs)
    space.scale_to(s.get("scaled_to_params", cfg.budget.max_params))
    teacher, data = prepare(cfg, log, need_teacher=train)
    specs = space.new_members(best["config"], data.input_shape, data.num_classes, n)
    log(f"drawing {n} new members of trial #{best['number']}'s generator" + (", distilling each" if train else ""))
    members = []
    for j, spec in enumerate(specs):
        m = {"member": j, "spec": spec, "params": sum(p.numel() for p in build_from_spec(spec).parameters())}
        if train:
            seed_everything(cfg.seed)
            r = distill(trial_config(cfg, best), log, teacher=teacher, data=data, student=build_from_spec(spec),
                        subdir=f"family/{j:02d}", save_config=False, resume=True)
            m.update({k: r[k] for k in ("val_acc", "test_acc", "checkpoint")})
        log(f"  member {j}: {m['params']:,} params" + (f", test acc {m['test_acc']:.4f}" if train else ""))
        members.append(m)
    family = Family(trial=best["number"],
                    generator={k: v for k, v in best["config"].items() if k not in best.get("recipe", {})},
                    recipe=best.get("recipe") or {}, members=members)
    results["family"] = family.to_dict()
    rewrite_run(run, results)
    return family

import pytest

from archkd.config import Config, all_keys, load_config, save_config
from archkd.errors import ArchkdError


def test_defaults_and_precedence(tmp_path):
    y = tmp_path / "c.yaml"
    y.write_text("train:\n  epochs: 7\n  lr: 0.2\nsearch:\n  n_trials: 4\n")
    cfg = load_config(y, ["train.epochs=9"], {"train.lr": 0.3})
    assert cfg.train.epochs == 9  # override beats flag beats YAML
    assert cfg.train.lr == 0.3
    assert cfg.search.n_trials == 4
    assert cfg.data.source == "digits"


def test_unknown_key_suggests_closest():
    with pytest.raises(ArchkdError) as e:
        load_config(None, ["train.epoch=3"])
    assert "train.epochs" in str(e.value)


def test_unknown_yaml_key(tmp_path):
    y = tmp_path / "c.yaml"
    y.write_text("serch:\n  n_trials: 4\n")
    with pytest.raises(ArchkdError, match="did you mean 'search'"):
        load_config(y)


def test_type_errors_are_user_errors():
    with pytest.raises(ArchkdError, match="expected a int"):
        load_config(None, ["train.epochs=abc"])
    with pytest.raises(ArchkdError, match="key.sub=value"):
        load_config(None, ["oops"])


def test_lists_dicts_and_none():
    cfg = load_config(None, ["search.space_kwargs={widths: [8, 16]}", "budget.max_params=1000",
                             "teacher.mean=[0.5]", "train.grad_clip=null"])
    assert cfg.search.space_kwargs == {"widths": [8, 16]}
    assert cfg.budget.max_params == 1000 and cfg.teacher.mean == [0.5] and cfg.train.grad_clip is None


def test_saved_config_round_trips(tmp_path):
    cfg = load_config(None, ["name=x", "train.epochs=3"])
    p = save_config(cfg, tmp_path / "config.yaml")
    again = load_config(p)
    assert again == cfg
    assert "budget.max_latency_ms" in all_keys()
    assert isinstance(again, Config)


def test_threads_follow_idle_cores(monkeypatch):
    import os

    import torch

    from archkd.device import configure_threads

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 4)
    monkeypatch.setattr(os, "getloadavg", lambda: (3.0, 0.0, 0.0))
    assert configure_threads() == 1 and torch.get_num_threads() == 1
    monkeypatch.setattr(os, "getloadavg", lambda: (0.2, 0.0, 0.0))
    assert configure_threads() == 4
    monkeypatch.setattr(os, "getloadavg", lambda: (9.0, 0.0, 0.0))
    assert configure_threads() == 1
    assert configure_threads(2) == 2
    monkeypatch.setenv("OMP_NUM_THREADS", "3")  # the user's word beats the load average, and an explicit value beats it
    assert configure_threads() == 3 and torch.get_num_threads() == 3
    assert configure_threads(2) == 2
    monkeypatch.setenv("OMP_NUM_THREADS", "")  # set but empty: as if unset
    assert configure_threads() == 1
    torch.set_num_threads(1)


@pytest.mark.parametrize("key, value, close", [("search.method", "tpee", "tpe"), ("search.space", "stagez", "stages"),
                                               ("student.arch", "resnet9000", None), ("distill.loss", "fitnet", None),
                                               ("process.transform", "atention", "attention"),
                                               ("search.prescreen.proxy", "diswat", "diswot"),
                                               ("generic.space", "mnaz", "mnas")])
def test_registry_backed_choices_are_checked_when_the_config_loads(key, value, close):
    import archkd.api  # noqa: F401  (imports every registry, as the CLI does)

    with pytest.raises(ArchkdError, match=f"config key '{key}' is '{value}'") as e:
        load_config(overrides=[f"{key}={value}"])
    assert (f"did you mean '{close}'" in str(e.value)) if close else "choose from" in str(e.value)
    assert load_config(overrides=["search.method=autokd"]).search.space == "nago"  # a registered name passes


def test_every_example_config_loads_and_validates():
    """configs/*.yaml: every key known, every value typed, every choice registered."""
    from pathlib import Path

    import archkd.api  # noqa: F401  (registries, as the CLI has them)

    files = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))
    assert len(files) >= 5
    for f in files:
        cfg = load_config(f)
        assert cfg.name and cfg.name != "run", f

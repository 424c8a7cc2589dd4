"""The Optuna recipe search (esg_lib.engine.search, `esg search`) and the `cpu2` profile it feeds."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from esg_lib.cli import main as cli_main
from esg_lib.engine import search as S
from esg_lib.engine import train as train_module
from esg_lib.engine.config import CPU2_FAMILY, CPU2_RECIPES, SEARCH_MODELS, build_config
from esg_lib.engine.tuning import recipe_ready
from esg_lib.errors import UserError

ROOT = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------------- pure parts
def test_online_only_trials_get_the_same_optimiser_steps_as_offline_ones():
    params = {**S.cpu_recipe_params("resnet18"), "steps": 915}
    offline = S.recipe_fields({**params, "data": "offline x4"}, train_images=3912, batch_size=64)
    online = S.recipe_fields({**params, "data": "online"}, train_images=978, batch_size=64)
    assert offline["epochs"] * (3912 // 64) == 915
    assert abs(online["epochs"] * (978 // 64) - 915) <= 978 // 64
    assert (offline["augment_copies"], online["augment_copies"]) == (3, 0)
    assert online["online_augment"] and not offline["online_augment"]


@pytest.mark.parametrize("model", SEARCH_MODELS)
def test_the_cpu_recipe_is_a_point_of_the_search_space(model):
    """Trial 0 of each study is the `cpu` recipe: the same training fields, expressed in the space."""
    cfg = build_config("cpu", model=model)
    fields = S.recipe_fields(S.cpu_recipe_params(model), train_images=3912, batch_size=cfg.batch_size)
    assert fields == {k: getattr(cfg, k) for k in S.RECIPE_FIELDS}
    space = S.distributions(model)
    for name, value in S.cpu_recipe_params(model).items():
        assert space[name]._contains(space[name].to_internal_repr(value)), name


def test_running_score_is_the_mean_of_the_last_epochs():
    assert S.running_score([0.1, 0.5, 0.6, 0.7]) == pytest.approx((0.5 + 0.6 + 0.7) / 3)
    assert S.running_score([0.4]) == 0.4
    assert S.running_score([None, None]) is None


def _log(train, val):
    return [{"train_acc": t, "val_acc": v, "step": 10 * (i + 1)} for i, (t, v) in enumerate(zip(train, val))]


def test_curve_verdicts():
    assert S.curve_verdict(_log([0.5, 0.7, 0.8, 0.84], [0.6, 0.81, 0.86, 0.88])) == "under-trained"
    assert S.curve_verdict(_log([0.9, 1.0, 1.0], [0.5, 0.52, 0.52])) == "memorising"
    assert S.curve_verdict(_log([0.9, 0.97, 0.98], [0.9, 0.95, 0.94])) == "converged"
    assert S.curve_verdict([]) == "no epochs"


def test_until_accepts_minutes_and_clock_times_and_refuses_the_rest():
    import time

    assert S.parse_until(None) is None
    assert S.parse_until("30m") == pytest.approx(time.time() + 1800, abs=5)
    assert isinstance(S.parse_until("18:40"), float)
    for bad in ("soon", "25:00", "12:60"):
        with pytest.raises(S.SearchError, match="--until"):
            S.parse_until(bad)


def test_a_clock_time_already_past_today_means_tomorrow():
    """`--until 01:10` typed at 22:36 must not stop the search at once (it did, in session 9)."""
    import time

    def clock(offset_s: float) -> str:
        t = time.localtime(time.time() + offset_s)
        return f"{t.tm_hour:02d}:{t.tm_min:02d}"

    ahead = S.parse_until(clock(180)) - time.time()
    assert 110 <= ahead <= 190
    behind = S.parse_until(clock(-180)) - time.time()
    assert 23 * 3600 - 200 <= behind <= 24 * 3600 + 3600   # a day ahead, whatever DST does tonight


# ----------------------------------------------------------------------------------- adopting `cpu`
def test_the_cpu_trial_is_adopted_once_from_its_committed_rerun_log(tmp_path):
    found = S.rerun_log("resnet18", ROOT / "results")
    if found is None:
        pytest.skip("no committed resnet18 seed-0 rerun")
    (tmp_path / "cpu" / "reruns" / "x-sdd").mkdir(parents=True)
    src = found[0].parent
    dst = tmp_path / "cpu" / "reruns" / "x-sdd" / "resnet18" / src.name
    dst.mkdir(parents=True)
    for name in ("log.jsonl", "metrics.json", "meta.json", "config.json"):
        (dst / name).write_bytes((src / name).read_bytes())
    study = S.load_study("cpu2", "resnet18", tmp_path, create=True)
    assert S.adopt_cpu_trial(study, "resnet18", tmp_path)
    assert not S.adopt_cpu_trial(study, "resnet18", tmp_path)   # once
    (trial,) = study.trials
    accs = [json.loads(line)["val_acc"] for line in (src / "log.jsonl").read_text().splitlines()]
    assert trial.value == pytest.approx(sum(accs[-3:]) / 3)
    assert trial.user_attrs["val_n"] == json.loads((src / "metrics.json").read_text())["split_sizes"]["val"]
    assert not any("test" in key for key in trial.user_attrs)


# ----------------------------------------------------------------------------------- running
@pytest.fixture
def tiny_search(monkeypatch):
    """Budgets small enough for the smoke profile: 1-2 epochs of 18 steps, offline data only."""
    monkeypatch.setattr(S, "STEP_BUDGETS", (20, 40))
    monkeypatch.setattr(S, "MIN_RESOURCE_STEPS", 10)
    monkeypatch.setattr(S, "STARTUP_TRIALS", 1)
    monkeypatch.setattr(S, "DATA_MODES", {"offline x4": {"augment_copies": 3, "online_augment": False}})


def test_a_search_runs_round_robin_writes_its_studies_and_table(tmp_path, tiny_search):
    ran = S.run_search("smoke", ("resnet18", "convnextv2"), n_trials=2, out=tmp_path / "runs",
                       results=tmp_path / "results", threads=1, progress=False)
    assert ran == 4
    for model in ("resnet18", "convnextv2"):
        assert S.study_path("smoke", model, tmp_path / "results").is_file()
        rows = S.trial_rows("smoke", model, tmp_path / "results")
        assert [r["state"] for r in rows].count("RUNNING") == 0 and len(rows) == 2
        assert all(r["steps_done"] and r["fields"] for r in rows)
    # validation only: no trial run predicted its test part
    trial_metrics = [json.loads(p.read_text()) for p in (tmp_path / "runs").rglob("metrics.json")]
    assert trial_metrics and all(m["test"] is None and m["status"] == "done" for m in trial_metrics)
    table = (tmp_path / "results" / "smoke" / "search.md").read_text()
    # two trial rows and one budget row per model
    assert table.count("| resnet18 |") == 3 and table.count("| convnextv2 |") == 3
    # a finished search runs nothing more
    assert S.run_search("smoke", ("resnet18", "convnextv2"), n_trials=2, out=tmp_path / "runs",
                        results=tmp_path / "results", threads=1, progress=False) == 0


class _Killed(BaseException):
    """Stands for SIGKILL: nothing in the search catches it."""


def test_a_killed_trial_is_retried_with_its_parameters_and_resumes_its_run(tmp_path, tiny_search, monkeypatch):
    monkeypatch.setattr(S, "STEP_BUDGETS", (40,))

    def kill_in_epoch_two(step):
        if step == 25:
            raise _Killed()

    monkeypatch.setattr(train_module, "STEP_HOOK", kill_in_epoch_two)
    with pytest.raises(_Killed):
        S.run_search("smoke", ("resnet18",), n_trials=1, out=tmp_path / "runs", results=tmp_path / "results",
                     threads=1, progress=False)
    monkeypatch.setattr(train_module, "STEP_HOOK", None)
    # the killed process left its trial RUNNING and its run folder with epoch 1 logged
    (first,) = S.load_study("smoke", "resnet18", tmp_path / "results").trials
    assert first.state.name == "RUNNING"
    logs = list((tmp_path / "runs").rglob("log.jsonl"))
    assert len(logs) == 1 and len(logs[0].read_text().splitlines()) == 1

    assert S.run_search("smoke", ("resnet18",), n_trials=1, out=tmp_path / "runs", results=tmp_path / "results",
                        threads=1, progress=False) == 1
    failed, retry = S.load_study("smoke", "resnet18", tmp_path / "results").trials
    assert failed.state.name == "FAIL" and retry.state.name == "COMPLETE"
    assert retry.params == first.params and retry.user_attrs["retry_of"] == first.number
    assert list((tmp_path / "runs").rglob("log.jsonl")) == logs            # the same run folder, resumed
    assert [json.loads(line)["epoch"] for line in logs[0].read_text().splitlines()] == [1, 2]
    assert sorted(retry.intermediate_values) == [18, 36]                  # epoch 1 replayed to the pruner


def test_a_second_search_of_the_same_model_is_refused(tmp_path):
    from esg_lib.engine import runs as R

    lock = R.RunLock(S.study_path("smoke", "resnet18", tmp_path).with_suffix(".search")).acquire()
    try:
        with pytest.raises(S.SearchError, match="another process"):
            S.run_search("smoke", ("resnet18",), n_trials=1, out=tmp_path / "runs", results=tmp_path)
    finally:
        lock.release()


# ----------------------------------------------------------------------------------- cpu2 and the CLI
def test_cpu2_rows_wait_for_their_search_and_recipes_match_the_committed_winners():
    results = ROOT / "results"
    for model, recipe in CPU2_RECIPES.items():
        best = S.winner("cpu2", model, results)
        assert best is not None, f"{model}: CPU2_RECIPES holds a recipe but no committed study has a winner"
        assert len([r for r in S.trial_rows("cpu2", model, results)
                    if r["state"] in ("COMPLETE", "PRUNED")]) >= S.DEFAULT_TRIALS
        assert recipe == {k: best["fields"][k] for k in S.RECIPE_FIELDS}
    for model in SEARCH_MODELS:
        ready, why = recipe_ready("cpu2", model)
        assert ready == (model in CPU2_RECIPES), why
    for row, family in CPU2_FAMILY.items():
        assert recipe_ready("cpu2", row)[0] == (family in CPU2_RECIPES)


def test_search_cli_refuses_bad_arguments_in_one_line(tmp_path, capsys):
    assert cli_main(["search", "--profile", "cpu2", "--model", "nope", "--results", str(tmp_path)]) == 2
    assert "not a row" in capsys.readouterr().err
    assert cli_main(["search", "--profile", "cpu2", "--until", "later", "--results", str(tmp_path)]) == 2
    assert "--until" in capsys.readouterr().err
    assert cli_main(["search", "--profile", "cpu2", "--report", "--results", str(tmp_path)]) == 0
    assert "No `cpu2` search studies" in (tmp_path / "cpu2" / "search.md").read_text()


def test_report_of_a_missing_study_names_the_command():
    with pytest.raises(UserError, match="esg search"):
        S.load_study("cpu2", "resnet18", "/nonexistent-results")


# ----------------------------------------------------------------------------------- crop and RandAugment
def test_online_crop_and_rand_augment_are_off_by_default_and_named_in_the_identity_when_on():
    import torch

    from esg_lib.data.augment import training_transform, training_transform_identity

    assert training_transform(False, 32) is None
    assert set(training_transform_identity(True)) == {"online_augment"}       # as before the options existed
    ident = training_transform_identity(False, online_crop=0.5, rand_augment=2)
    assert ident["online_augment"] is False and ident["online_crop"]["scale"] == [0.5, 1.0]
    assert ident["rand_augment"]["num_ops"] == 2
    x = torch.rand(3, 32, 32)
    x = (x * 255).round() / 255                                                # uint8 values, as the dataset holds
    torch.manual_seed(0)
    y = training_transform(True, 32, online_crop=0.5, rand_augment=2)(x)
    assert y.shape == x.shape and y.dtype == torch.float32 and 0.0 <= float(y.min()) <= float(y.max()) <= 1.0
    assert not torch.equal(x, y)


def test_a_bundle_switches_to_the_crop_and_rand_augment_of_a_config_and_gets_a_new_identity(tiny_bundle_cfg):
    from esg_lib.engine.train import matching_bundle, prepare_bundle

    cfg = tiny_bundle_cfg
    base = prepare_bundle(cfg)
    same = matching_bundle(cfg, base)
    assert same is base
    cropped_cfg = build_config("smoke", model="resnet18", online_crop=0.8, rand_augment=2)
    cropped = matching_bundle(cropped_cfg, base)
    assert cropped is not base and cropped.train.transform is not None and base.train.transform is None
    assert cropped.identity["online_crop"]["scale"] == [0.8, 1.0] and "online_crop" not in base.identity
    assert matching_bundle(cfg, cropped).identity == base.identity             # and back again


@pytest.fixture
def tiny_bundle_cfg():
    return build_config("smoke", model="resnet18")


def test_the_crop_and_rand_augment_reach_the_trial_config_and_stay_out_of_old_identities():
    from esg_lib.engine.config import identity_fields

    params = {**S.cpu_recipe_params("resnet18"), "crop": 0.5, "rand_augment": 2}
    fields = S.recipe_fields(params, train_images=3912, batch_size=64)
    assert (fields["online_crop"], fields["rand_augment"]) == (0.5, 2)
    assert "online_crop" not in identity_fields(build_config("cpu", model="resnet18"))
    assert identity_fields(build_config("cpu", model="resnet18", **fields))["online_crop"] == 0.5


def test_each_models_random_start_draws_the_same_recipes_and_retries_draw_nothing(tmp_path, tiny_search):
    """The n-th drawn trial of every model has the same parameters during the random start, also when one
    model's study holds an interrupted trial and its retry in between."""
    def draw(model):
        study = S.load_study("smoke", model, tmp_path, create=True)   # reloaded: the sampler's seed is set here
        trial = study.ask()
        return study, trial, S.suggest_recipe(trial, model)

    study, t, resnet_first = draw("resnet18")
    study.tell(t, 0.4)
    study, t, resnet_second = draw("resnet18")
    study.tell(t, 0.4)

    study, t, cnx_first = draw("convnextv2")                 # interrupted: left RUNNING
    assert S.requeue_interrupted(study) == 1
    study, retry, retry_params = draw("convnextv2")           # the retry: the enqueued parameters again
    assert retry_params == cnx_first and retry.user_attrs["retry_of"] == t.number
    study.tell(retry, 0.5)
    study, t, cnx_second = draw("convnextv2")
    assert len(S.drawn_trials(study)) == 2
    assert cnx_first == resnet_first and cnx_second == resnet_second and resnet_first != resnet_second


def test_the_winning_trial_is_adopted_as_the_production_seed_0_run(tmp_path, tiny_search):
    from esg_lib.engine.train import matching_bundle, planned_run_dir, prepare_bundle
    from esg_lib.engine.tuning import adopt_tuning_run

    S.run_search("smoke", ("resnet18",), n_trials=1, out=tmp_path / "runs", results=tmp_path / "results",
                 threads=1, progress=False)
    best = S.winner("smoke", "resnet18", tmp_path / "results")
    cfg = build_config("smoke", model="resnet18", seed=0, out=str(tmp_path / "runs"), **best["fields"])
    folder = planned_run_dir(cfg, matching_bundle(cfg, prepare_bundle(cfg)))
    assert folder.name.endswith(best["run_id"][:10])          # same identity as the trial
    assert adopt_tuning_run(cfg, folder) and (folder / "metrics.json").is_file()
    assert not adopt_tuning_run(cfg, folder)                   # once


def test_reading_a_study_writes_nothing_to_its_journal(tmp_path):
    """`esg search --report` and the tests read the committed journals: they must stay byte for byte."""
    import shutil

    committed = ROOT / "results" / "cpu2" / "search"
    if not committed.is_dir():
        pytest.skip("no committed cpu2 studies")
    shutil.copytree(committed, tmp_path / "cpu2" / "search", ignore=shutil.ignore_patterns("*.lock"))
    before = {p.name: p.read_bytes() for p in (tmp_path / "cpu2" / "search").iterdir()}
    for model in SEARCH_MODELS:
        S.trial_rows("cpu2", model, tmp_path)
        S.load_study("cpu2", model, tmp_path, create=True)
    S.write_search_table("cpu2", tmp_path)
    after = {p.name: p.read_bytes() for p in (tmp_path / "cpu2" / "search").iterdir()}
    assert after == before


def test_the_committed_trial_table_is_what_esg_search_report_writes(tmp_path):
    import shutil

    committed = ROOT / "results" / "cpu2"
    if not (committed / "search").is_dir():
        pytest.skip("no committed cpu2 studies")
    shutil.copytree(committed / "search", tmp_path / "cpu2" / "search", ignore=shutil.ignore_patterns("*.lock"))
    fresh = S.write_search_table("cpu2", tmp_path).read_text()
    assert (committed / "search.md").read_text() == fresh

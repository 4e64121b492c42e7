"""`amft compare` end to end in miniature: every method and ablation, one seed, a few steps."""

import json

import pytest
import yaml

from amft.cli import main
from amft.cli.compare import Comparison, load_study
from amft.cli.options import OptionsError
from amft.training import METHODS

#: Settings that fit a method's schedule into the miniature's 3 steps.
MINIATURE_SETTINGS = {
    "sft-then-rl": {"switch_step": 1},
    "fixed-mu": {"mu": 0.5},
    "chord": {"chord_mu_warmup_steps": 1, "chord_mu_decay_steps": 1},
    "relift": {"relift_buffer_size": 2},
    "gac": {"gac_update_freq": 1},  # its proxies are measured on every step (its prior scales to max_steps)
    "amft": {"amft_warmup_steps": 1, "entropy_calibration_steps": 1, "meta_period": 1, "meta_batch_size": 2,
             "meta_normalization": "cosine", "num_meta_prompts": 8},
}
# Every method of the table, so a new method joins CI's miniature comparison by its entry alone.
VARIANTS = {
    **{name: {"method": name, **MINIATURE_SETTINGS.get(name, {})} for name in METHODS},
    **{
        name: {"method": "amft", "amft_warmup_steps": warmup, "entropy_calibration_steps": 1, "meta_period": 1,
               "meta_batch_size": 2, "meta_normalization": normalization, **switches}
        for name, warmup, normalization, switches in (
            ("amft-no-meta", 1, "cosine", {"use_meta_term": False}),
            ("amft-no-entropy", 1, "cosine", {"use_entropy_term": False, "num_meta_prompts": 8}),
            ("amft-no-warmup", 0, "cosine", {"use_entropy_term": False, "num_meta_prompts": 8}),
            ("amft-raw", 1, "raw", {"num_meta_prompts": 8}),
        )
    },
}

TRAINING = {
    "model_name_or_path": "tiny-test", "template": "compact", "completion_format": "formula",
    "demo_solution": "canonical", "revision_keep_last": 0, "num_train_prompts": 64, "num_demonstrations": 64,
    "eval_before": False, "eval_limit": 3, "eval_attempts": 1, "eval_max_new_tokens": 16,
    "progress_eval_steps": 2, "progress_eval_episodes": 3, "use_cpu": True, "bf16": False, "max_steps": 3,
    "learning_rate": 1e-3, "per_device_train_batch_size": 8, "num_generations": 4, "sft_batch_size": 4,
    "max_completion_length": 16, "logging_steps": 1, "save_steps": 2, "report_to": "none", "disable_tqdm": True,
    "threads": 1,
}


def write_study(tmp_path, **changes):
    study = {"output_dir": str(tmp_path / "study"), "seeds": [0], "base_sft_steps": 2, "base": {"progress_eval_steps": 2},
             "target_split": "rl-only", "target_success": 0.5, "reference_variant": "sft-then-rl",
             "training": TRAINING, "variants": VARIANTS, **changes}
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(study, sort_keys=False))
    return path


@pytest.mark.slow
def test_miniature_comparison_of_every_method_then_a_rerun_skips_them(tmp_path, capsys):
    path = write_study(tmp_path)
    assert main(["compare", "--config", str(path)]) == 0
    out_dir = tmp_path / "study"
    results = json.loads((out_dir / "results.json").read_text())
    start, *rows = results["variants"]
    assert [row["variant"] for row in rows] == list(VARIANTS)
    for row in rows:
        summary = json.loads((out_dir / "runs" / row["variant"] / "seed0" / "summary.json").read_text())
        assert summary["run"]["steps"] == 3 and summary["run"]["method"] == VARIANTS[row["variant"]]["method"]
        assert set(row) >= {"id", "rl-only", "unseen-deals", "ood-rule", "steps_to_target", "steps_to_reference"}
    # Without a frontier, each variant reads against the reference on the target split (one seed: no interval).
    amft = next(row for row in rows if row["variant"] == "amft")
    assert amft["vs_reference"] == {"rl-only": {"mean": pytest.approx(amft["rl-only"]["mean"] - next(
        row["rl-only"]["mean"] for row in rows if row["variant"] == "sft-then-rl")), "ci95": None, "pairs": 1}}
    assert all(("vs_reference" in row) == (row["variant"] != "sft-then-rl") for row in rows)
    # Every variant of the seed started from the same SFT model, whose own evaluation is the table's first row.
    base = json.loads((out_dir / "base" / "seed0" / "summary.json").read_text())
    assert base["run"]["steps"] == 2
    assert start["variant"] == "starting model (2 SFT steps)" and start["starting_model"] and start["steps"] == 2
    assert start["id"]["mean"] == base["success_rate"]["id"]
    table = (out_dir / "results.md").read_text()
    assert all(f"| {name} | 1 |" in table for name in [start["variant"], *VARIANTS])
    assert (out_dir / "results.csv").read_text().count("\n") == len(VARIANTS) + 2
    for plot in ("success_vs_step.png", "mu.png", "entropy.png"):
        assert (out_dir / plot).stat().st_size > 10_000

    capsys.readouterr()
    stamp = (out_dir / "runs" / "amft" / "seed0" / "summary.json").stat().st_mtime_ns
    assert main(["compare", "--config", str(path), "--variants", "amft,grpo"]) == 0
    out = capsys.readouterr().out
    assert out.count("finished earlier, skipped") == 2
    assert (out_dir / "runs" / "amft" / "seed0" / "summary.json").stat().st_mtime_ns == stamp


def test_the_starting_models_settings_are_checked_before_any_run(tmp_path):
    # the shared validation prompts suit the amft variant, but not the SFT run that makes the starting model
    path = write_study(tmp_path, variants={"amft": VARIANTS["amft"]}, reference_variant=None,
                       training={**TRAINING, "num_meta_prompts": 8})
    with pytest.raises(OptionsError, match=r"the starting model \(base\): num_meta_prompts gives validation prompts"):
        Comparison(load_study(str(path))).plan()


def test_a_variant_may_not_change_the_budget(tmp_path):
    path = write_study(tmp_path, variants={"greedy": {"method": "grpo", "max_steps": 10}})
    with pytest.raises(ValueError, match=r"study.yaml: variant 'greedy' overrides budget settings \['max_steps'\]"):
        load_study(str(path))


def test_unknown_study_keys_name_the_file(tmp_path):
    path = write_study(tmp_path, seedz=[1])
    with pytest.raises(OptionsError, match=rf"{path}: unknown key 'seedz' \(did you mean 'seeds'\?\)"):
        load_study(str(path))


def test_unknown_keys_of_the_training_settings_and_of_a_variant_name_the_key_the_file_and_the_variant(tmp_path):
    path = write_study(tmp_path, training={**TRAINING, "learning_rat": 1e-3})
    with pytest.raises(OptionsError, match=rf"{path}: training: unknown key 'learning_rat'"):
        load_study(str(path))
    path = write_study(tmp_path, variants={"amft": {"method": "amft", "meta_perod": 2}})
    with pytest.raises(OptionsError, match=rf"{path}: variant 'amft': unknown key 'meta_perod'"):
        load_study(str(path))
    path = write_study(tmp_path, variants={"virl-ish": {"method": "amft", "prompt_form": "compact"}})
    with pytest.raises(OptionsError, match=rf"{path}: variant 'virl-ish': 'prompt_form' is an option of task virl, "
                                           "and the task here is general-points"):
        load_study(str(path))


def test_study_keys_that_would_not_act_are_refused(tmp_path):
    path = write_study(tmp_path, base_sft_steps=0)
    with pytest.raises(OptionsError, match=rf"{path}: base: settings of the starting model, which only base_sft_steps"):
        load_study(str(path))
    path = write_study(tmp_path, target_split="rl_only")
    with pytest.raises(OptionsError, match=rf"{path}: target_split: 'rl_only' not evaluated"):
        load_study(str(path))


def test_what_the_study_sets_for_each_run_is_refused_in_its_settings(tmp_path):
    path = write_study(tmp_path, variants={"sft": {"method": "sft", "seed": 3}})
    with pytest.raises(OptionsError, match=rf"{path}: variant 'sft': seed: set by the study for each run"):
        load_study(str(path))
    path = write_study(tmp_path, training={**TRAINING, "dry_run": True})
    with pytest.raises(OptionsError, match=rf"{path}: training: dry_run: set by the study for each run"):
        load_study(str(path))
    path = write_study(tmp_path, training={**TRAINING, "language_model_init": "runs/text"})
    with pytest.raises(OptionsError, match=rf"{path}: training: language_model_init belongs in 'base'"):
        load_study(str(path))
    path = write_study(tmp_path, base={"max_steps": 900})
    with pytest.raises(OptionsError, match=rf"{path}: base: the starting model is trained by sft for base_sft_steps; "
                                           "leave out max_steps"):
        load_study(str(path))
    assert load_study(str(write_study(tmp_path, base={"language_model_init": "runs/text"}))).base == {
        "language_model_init": "runs/text"}


def test_a_studys_bad_value_names_the_variant_before_any_run(tmp_path):
    path = write_study(tmp_path, variants={"odd": {"method": "amft", "template": "fancy"}}, reference_variant=None)
    with pytest.raises(OptionsError, match=rf"{path}: variant 'odd': template must be one of"):
        Comparison(load_study(str(path))).plan()
    assert not (tmp_path / "study").exists()


@pytest.mark.slow
def test_parallel_runs_each_train_in_a_process_of_their_own_and_a_failed_run_is_named(tmp_path, capsys):
    variants = {"sft": VARIANTS["sft"], "amft": VARIANTS["amft"],
                # the count back at its default: with a file, the study's count would be refused before any run
                "broken": {"method": "sft", "demo_file": str(tmp_path / "missing.jsonl"), "num_demonstrations": 20000}}
    path = write_study(tmp_path, variants=variants, reference_variant=None)
    assert main(["compare", "--config", str(path), "--jobs", "2"]) == 1
    assert "amft compare: 1 run(s) failed: broken · seed 0" in capsys.readouterr().err
    runs = tmp_path / "study" / "runs"
    assert "missing.jsonl" in (runs / "broken" / "seed0" / "train.log").read_text()
    for name in ("sft", "amft"):
        assert json.loads((runs / name / "seed0" / "summary.json").read_text())["run"]["steps"] == 3
        assert "After training (3 steps)" in (runs / name / "seed0" / "train.log").read_text()  # its own output
    assert json.loads((tmp_path / "study" / "base" / "seed0" / "summary.json").read_text())["run"]["steps"] == 2
    assert "| amft | 1 |" in (tmp_path / "study" / "results.md").read_text()  # finished runs are reported anyway


def test_run_records_let_a_study_go_on_from_a_fresh_output_folder(tmp_path, capsys):
    records = tmp_path / "records"
    variants = {"sft": VARIANTS["sft"], "amft": VARIANTS["amft"]}
    path = write_study(tmp_path, variants=variants, reference_variant=None, records_dir=str(records))
    assert main(["compare", "--config", str(path)]) == 0
    first = json.loads((tmp_path / "study" / "results.json").read_text())["variants"]
    assert sorted(p.name for p in (records / "runs" / "amft" / "seed0").iterdir()) == [
        "log_history.json", "progress_eval.jsonl", "recipe.json", "summary.json"]

    # a clean clone: only the records; the report is the same, and a new variant trains only itself,
    # after the seed's starting model, whose weights are not in its record
    fresh = tmp_path / "fresh"
    assert main(["compare", "--config", str(path), "--output_dir", str(fresh), "--report_only"]) == 0
    assert json.loads((fresh / "results.json").read_text())["variants"] == first
    path = write_study(tmp_path, output_dir=str(fresh), variants={**variants, "grpo": VARIANTS["grpo"]},
                       reference_variant=None, records_dir=str(records))
    capsys.readouterr()
    assert main(["compare", "--config", str(path)]) == 0
    out = capsys.readouterr().out
    assert out.count("finished earlier, skipped") == 2 and "needed by grpo · seed 0" in out
    assert (fresh / "base" / "seed0" / "config.json").exists()
    assert (records / "runs" / "grpo" / "seed0" / "summary.json").exists()

    # The study file changes a finished variant's setting: its run, restored from the records, is refused
    # rather than reported as if made with it; a new thread count (set from --jobs) changes nothing.
    changed = {**variants, "amft": {**variants["amft"], "meta_lr": 0.1}, "grpo": VARIANTS["grpo"]}
    path = write_study(tmp_path, output_dir=str(tmp_path / "fresh-2"), variants=changed, reference_variant=None,
                       records_dir=str(records), training={**TRAINING, "threads": 2})
    capsys.readouterr()
    assert main(["compare", "--config", str(path), "--report_only"]) == 2
    err = capsys.readouterr().err
    assert "1 run folder(s) hold runs made with other settings" in err
    assert f"amft · seed 0 ({tmp_path / 'fresh-2' / 'runs' / 'amft' / 'seed0'}): settings.meta_lr: (not given) -> 0.1" in err


def test_recorded_starting_models_spare_training_them_again(tmp_path, capsys):
    records = tmp_path / "records"
    path = write_study(tmp_path, variants={"sft": VARIANTS["sft"]}, reference_variant=None, records_dir=str(records),
                       record_starting_models=True)
    assert main(["compare", "--config", str(path)]) == 0
    base, kept = tmp_path / "study" / "base" / "seed0", records / "base" / "seed0"
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= {p.name for p in kept.iterdir()}
    assert not list(kept.glob("checkpoint-*"))
    assert not {"training_args.bin", "eval_results.json"} & {p.name for p in kept.iterdir()}

    # a clean clone: a new variant starts from the recorded starting model, which is not trained again
    fresh = tmp_path / "fresh"
    path = write_study(tmp_path, output_dir=str(fresh), variants={"sft": VARIANTS["sft"], "grpo": VARIANTS["grpo"]},
                       reference_variant=None, records_dir=str(records), record_starting_models=True)
    capsys.readouterr()
    assert main(["compare", "--config", str(path)]) == 0
    out = capsys.readouterr().out
    assert "finished earlier, skipped" in out and "needed by" not in out
    assert (fresh / "base" / "seed0" / "model.safetensors").read_bytes() == (base / "model.safetensors").read_bytes()
    assert json.loads((fresh / "runs" / "grpo" / "seed0" / "summary.json").read_text())["run"]["steps"] == 3


def test_recording_starting_models_needs_records_and_starting_models(tmp_path):
    for changes, missing in (({}, "no records_dir"), ({"records_dir": str(tmp_path / "r"), "base_sft_steps": 0,
                                                       "base": {}}, "none")):
        path = write_study(tmp_path, variants={"sft": VARIANTS["sft"]}, reference_variant=None,
                           record_starting_models=True, **changes)
        with pytest.raises(OptionsError, match=f"record_starting_models: keeps the starting models .*has {missing}"):
            load_study(str(path))

"""The main job's round and recipe settings (scripts/run_local_subnet.py), without running it."""
from scripts.run_local_subnet import MAIN_JOB_TINY_RECIPE, parse_args


def test_the_main_job_fills_its_rounds_on_the_tiny_preset():
    args = parse_args([])
    assert (args.round_blocks, args.train_blocks) == (96, 95)
    assert (args.inner_steps, args.pages_per_miner) == MAIN_JOB_TINY_RECIPE


def test_a_recipe_flag_given_keeps_the_preset_for_the_other():
    args = parse_args(["--inner-steps", "15"])
    assert (args.inner_steps, args.pages_per_miner) == (15, 0)  # 0: the preset's pages
    args = parse_args(["--pages-per-miner", "64"])
    assert (args.inner_steps, args.pages_per_miner) == (0, 64)


def test_other_presets_and_pretrained_models_keep_their_recipe():
    assert (parse_args(["--preset", "small"]).inner_steps, parse_args(["--preset", "small"]).pages_per_miner) == (0, 0)
    args = parse_args(["--model", "some/model"])
    assert (args.inner_steps, args.pages_per_miner) == (0, 0)

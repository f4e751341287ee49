"""Bad input to every `jaxgen` subcommand, one table row each: exit status 2, exactly one
`jaxgen: error: ...` line on stderr (no traceback, no warning lines), and every folder the command
was pointed at byte-for-byte as it was (a folder that did not exist still does not).

The runs the rows need are built once per test run (conftest `shared_dir`): a 2-step vae_digits:quick
run and copies of it damaged in the ways a user meets (truncated or foreign config.json, a config
without checkpoints, a half-written checkpoint). Rows that need a read-only folder make a private
copy (chattr +i as root, who ignores permission bits; chmod otherwise).
"""
import hashlib
import os
import shutil
import subprocess

import pytest

from jaxgen import config as config_lib
from jaxgen.cli import main

TEN_THOUSAND = "red circle " * 909 + "a"  # 10,000 characters


def _build(path):
    from jaxgen.train import loop

    run = str(path / "vae")
    config = config_lib.load("vae_digits:quick", ["--config.train.steps=2", "--config.train.ckpt_every=2",
                                                  "--config.train.log_every=1", "--config.train.sample_every=0"])
    loop.train(config, run, quiet=True)
    shutil.copytree(run, path / "truncated")
    text = (path / "truncated" / "config.json").read_text()
    (path / "truncated" / "config.json").write_text(text[: len(text) // 2])
    (path / "foreign").mkdir()
    (path / "foreign" / "config.json").write_text('{"name": "not a jaxgen run", "version": 3}')
    (path / "json_list").mkdir()
    (path / "json_list" / "config.json").write_text("[1, 2, 3]")
    (path / "no_checkpoint").mkdir()
    shutil.copy(path / "vae" / "config.json", path / "no_checkpoint" / "config.json")
    (path / "diffusion_config").mkdir()
    diffusion = config_lib.load("diffusion_digits:quick")
    (path / "diffusion_config" / "config.json").write_text(config_lib.to_json(diffusion))
    # A newer step folder missing its files: a save that died half-way.
    shutil.copytree(run, path / "half_written")
    step = path / "half_written" / "checkpoints" / "9"
    shutil.copytree(path / "vae" / "checkpoints" / "2", step)
    shutil.rmtree(step / "state")
    # Another model's config.json beside this run's checkpoints.
    shutil.copytree(run, path / "other_model_config")
    (path / "other_model_config" / "config.json").write_text(
        config_lib.to_json(config_lib.load("classifier_digits:quick")))
    # The newest checkpoint's array files overwritten (a disk that lost them).
    shutil.copytree(run, path / "garbage_checkpoint")
    for root, _, names in os.walk(path / "garbage_checkpoint" / "checkpoints" / "2" / "state"):
        for name in names:
            with open(os.path.join(root, name), "wb") as f:
                f.write(b"garbage")
    (path / "a_file").write_text("not a folder\n")
    (path / "empty").mkdir()
    (path / "folder.png").mkdir()
    (path / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    from PIL import Image

    Image.new("RGB", (16, 16), (200, 30, 30)).save(path / "good.png")
    (path / "cut.png").write_bytes((path / "good.png").read_bytes()[:40])
    (path / "images_corrupt").mkdir()
    shutil.copy(path / "corrupt.png", path / "images_corrupt" / "x.png")
    (path / "syntax_error.py").write_text("def get_config(:\n")
    (path / "import_error.py").write_text("import jaxgen_no_such_module\n")
    (path / "no_get_config.py").write_text("CONFIG = {}\n")
    (path / "not_a_dict.py").write_text("def get_config(arg=''):\n    return [1, 2]\n")
    (path / "no_argument.py").write_text("from jaxgen.configs.vae_digits import get_config as _g\n\n\n"
                                         "def get_config():\n    return _g('quick')\n")


@pytest.fixture(scope="module")
def shared(shared_dir):
    return shared_dir("bad_inputs", _build)


@pytest.fixture
def paths(shared, tmp_path):
    """{name: path}: the shared runs and files (read-only for tests), plus this test's own folders."""
    p = {name: os.path.join(shared, name) for name in os.listdir(shared)}
    p["missing"] = str(tmp_path / "missing")
    p["new"] = str(tmp_path / "new_run")
    p["out"] = str(tmp_path / "out")
    os.makedirs(p["out"])
    return p


def _tree(path):
    """Hash of every name and byte under `path` (None when it does not exist)."""
    if not os.path.lexists(path):
        return None
    if not os.path.isdir(path):
        return hashlib.sha256(open(path, "rb").read()).hexdigest()
    h = hashlib.sha256()
    for root, dirs, files in os.walk(path):
        dirs.sort()
        for name in sorted(dirs):
            h.update(b"d" + os.path.relpath(os.path.join(root, name), path).encode() + b"\0")
        for name in sorted(files):
            full = os.path.join(root, name)
            h.update(b"f" + os.path.relpath(full, path).encode() + b"\0")
            with open(full, "rb") as f:
                h.update(hashlib.sha256(f.read()).digest())
    return h.hexdigest()


# (id, argv with {name} placeholders filled from `paths`, part of the expected sentence). Every folder
# named in argv, and the --out folder, must hash the same before and after.
CASES = [
    # ---- configs and their arguments --------------------------------------------------------------
    ("config-bad-argument", ["train", "vae_digits:bogus", "--workdir", "{new}"], "not 'bogus'"),
    ("config-unknown-name", ["train", "vae_digitz", "--workdir", "{new}"], "unknown config 'vae_digitz'"),
    ("config-file-missing", ["train", "{missing}/mine.py", "--workdir", "{new}"], "does not exist"),
    ("config-file-syntax-error", ["train", "{syntax_error.py}", "--workdir", "{new}"],
     "cannot be imported (SyntaxError"),
    ("config-file-import-error", ["train", "{import_error.py}", "--workdir", "{new}"],
     "cannot be imported (ModuleNotFoundError"),
    ("config-file-no-get-config", ["train", "{no_get_config.py}", "--workdir", "{new}"], "has no get_config()"),
    ("config-file-not-a-configdict", ["train", "{not_a_dict.py}", "--workdir", "{new}"],
     "not an ml_collections.ConfigDict"),
    ("config-file-takes-no-argument", ["train", "{no_argument.py}:quick", "--workdir", "{new}"], "takes no argument"),
    ("configs-with-override", ["configs", "--config.train.steps=3"], "only apply to"),
    ("configs-unknown-name", ["configs", "vae_digit"], "unknown config 'vae_digit'; available: "),
    ("argparse-missing-arguments", ["train"], "the following arguments are required: config, --workdir (see "
                                              "`jaxgen train --help`)"),
    ("argparse-not-an-int", ["sample", "--workdir", "{vae}", "--num", "many", "--out", "{out}/s.png"],
     "argument --num: invalid int value: 'many'"),
    ("argparse-unknown-flag", ["generate", "--workdir", "{vae}", "--prompt", "a red circle", "--out", "{out}/g.png",
                               "--colour", "red"], "unrecognized arguments: --colour red"),
    # ---- overrides ---------------------------------------------------------------------------------
    ("override-unknown-field", ["train", "vae_digits:quick", "--workdir", "{new}", "--config.train.stepz=3"],
     "no field 'train.stepz'"),
    ("override-unknown-section", ["train", "vae_digits:quick", "--workdir", "{new}", "--config.trian.steps=3"],
     "no section 'trian'"),
    ("override-no-value", ["train", "vae_digits:quick", "--workdir", "{new}", "--config.train.steps"],
     "must look like"),
    ("override-wrong-type", ["train", "vae_digits:quick", "--workdir", "{new}", "--config.train.steps=many"],
     "train.steps expects a int"),
    ("override-bool-wrong", ["train", "vae_digits:quick", "--workdir", "{new}", "--config.model.variational=maybe"],
     "must be true or false"),
    ("override-empty-tuple", ["train", "vae_digits:quick", "--workdir", "{new}", "--config.model.channels=()"],
     "model.channels must be a non-empty list"),
    ("override-zero-channels", ["train", "diffusion_digits:quick", "--workdir", "{new}",
                                "--config.model.channels=(0,16)"], "model.channels must be a non-empty list"),
    ("override-nan", ["train", "vae_digits:quick", "--workdir", "{new}", "--config.optim.lr=nan"],
     "optim.lr expects a float, not 'nan'"),
    ("override-inf", ["train", "vae_digits:quick", "--workdir", "{new}", "--config.optim.lr=1e999"],
     "optim.lr must be positive"),
    ("override-zero-steps", ["train", "vae_digits:quick", "--workdir", "{new}", "--config.train.steps=0"],
     "train.steps must be a positive integer"),
    ("override-zero-latent", ["train", "vae_digits:quick", "--workdir", "{new}", "--config.model.latent_dim=0"],
     "model.latent_dim must be a positive integer"),
    ("override-negative-warmup", ["train", "vae_digits:quick", "--workdir", "{new}",
                                  "--config.optim.warmup_steps=-5"], "optim.warmup_steps must be an integer >= 0"),
    ("override-unknown-choice", ["train", "vae_digits:quick", "--workdir", "{new}", "--config.optim.schedule=zigzag"],
     "optim.schedule must be one of"),
    ("override-model-choice", ["train", "vae_digits:quick", "--workdir", "{new}", "--config.model.upsample=magic"],
     "model.upsample must be one of"),
    ("override-ema-decay-one", ["train", "vae_digits:quick", "--workdir", "{new}", "--config.train.ema_decay=1.0"],
     "train.ema_decay must be in [0, 1)"),
    ("override-dropout-above-one", ["train", "classifier_digits:quick", "--workdir", "{new}",
                                    "--config.model.dropout=1.5"], "model.dropout must be a number in [0, 1)"),
    ("override-none-field-list", ["train", "vae_digits:quick", "--workdir", "{new}", "--config.data.data_dir=[1,2]"],
     "data.data_dir must be a folder path"),
    ("override-none-field-number", ["train", "vae_digits:quick", "--workdir", "{new}", "--config.data.data_dir=3"],
     "data.data_dir must be a folder path"),
    ("override-residual-on-base-stage", ["train", "text2image_shapes_sr:quick", "--workdir", "{new}",
                                         "--config.model.stage=base"], "applies to a super-resolution stage"),
    ("override-residual-negative", ["train", "text2image_shapes_sr:quick", "--workdir", "{new}",
                                    "--config.model.residual_scale=-0.4"], "model.residual_scale must be 0"),
    ("override-text-layers-negative", ["train", "text2image_shapes:quick", "--workdir", "{new}",
                                       "--config.model.text_layers=-1"], "model.text_layers must be an integer >= 0"),
    ("override-text-width-heads", ["train", "text2image_shapes:quick", "--workdir", "{new}",
                                   "--config.model.text_layers=1", "--config.model.text_width=30"],
     "model.text_width=30 must be divisible by model.num_heads=4"),
    ("override-dit-patch-size", ["train", "diffusion_digits:quick_dit", "--workdir", "{new}",
                                 "--config.model.patch_size=3"], "model.patch_size=3 must divide data.image_size=16"),
    ("override-prior-method", ["train", "unclip_shapes:quick", "--workdir", "{new}",
                               "--config.sample.prior_method=plms"], "sample.prior_method must be one of"),
    # ---- datasets, splits, image sizes ---------------------------------------------------------------
    ("dataset-unknown", ["train", "vae_digits:quick", "--workdir", "{new}", "--config.data.name=no_such_data"],
     "no_such_data"),
    ("split-unknown", ["train", "vae_digits:quick", "--workdir", "{new}", "--config.data.split=validation"],
     "validation"),
    ("eval-split-unknown", ["train", "vae_digits:quick", "--workdir", "{new}", "--config.data.eval_split=nope"],
     "no split 'nope'"),
    ("image-size-zero", ["train", "diffusion_digits:quick", "--workdir", "{new}", "--config.data.image_size=0"],
     "data.image_size must be a positive integer"),
    # ---- batch sizes and devices (the tests run on 8 fake devices) ---------------------------------
    ("batch-negative", ["train", "vae_digits:quick", "--workdir", "{new}", "--config.train.batch_size=-8"],
     "train.batch_size must be a positive integer"),
    ("batch-not-divisible-by-devices", ["train", "vae_digits:quick", "--workdir", "{new}",
                                        "--config.train.batch_size=30"], "not divisible by the 8 devices"),
    ("grad-accum-over-per-device-batch", ["train", "vae_digits:quick", "--workdir", "{new}",
                                          "--config.train.grad_accum=8"], "must divide the per-device batch"),
    ("grad-accum-not-dividing-batch", ["train", "vae_digits:quick", "--workdir", "{new}",
                                       "--config.train.grad_accum=3"], "must divide train.batch_size=32"),
    ("eval-batch-zero", ["eval", "--workdir", "{vae}", "--config.eval.batch_size=0"],
     "eval.batch_size must be a positive integer"),
    ("eval-batch-negative", ["eval", "--workdir", "{vae}", "--config.eval.batch_size=-5"],
     "eval.batch_size must be a positive integer"),
    ("eval-iwae-k-zero", ["eval", "--workdir", "{vae}", "--config.eval.iwae_k=0"], "eval.iwae_k must be a positive"),
    ("eval-iwae-chunk-not-dividing", ["eval", "--workdir", "{vae}", "--config.eval.iwae_chunk=3"],
     "eval.iwae_chunk=3 must divide eval.iwae_k=8"),
    ("eval-model-override", ["eval", "--workdir", "{vae}", "--config.model.latent_dim=4"],
     "takes only --config.sample.* and --config.eval.*"),
    # ---- run folders ---------------------------------------------------------------------------------
    ("train-workdir-is-a-file", ["train", "vae_digits:quick", "--workdir", "{a_file}"], "is a file, not a folder"),
    ("train-workdir-under-a-file", ["train", "vae_digits:quick", "--workdir", "{a_file}/run"],
     "cannot be created"),
    ("train-workdir-truncated-config", ["train", "vae_digits:quick", "--workdir", "{truncated}"],
     "cannot be read as JSON"),
    ("train-workdir-foreign-config", ["train", "vae_digits:quick", "--workdir", "{foreign}"],
     "is not a jaxgen run's config"),
    ("train-over-another-model", ["train", "classifier_digits:quick", "--workdir", "{vae}"],
     'written with task = "vae", but this run\'s task is "classifier"'),
    ("resume-different-model", ["train", "vae_digits:quick", "--workdir", "{vae}", "--config.model.latent_dim=4"],
     "written with model.latent_dim = 8, but this run's model.latent_dim is 4"),
    ("resume-different-data", ["train", "vae_digits:quick", "--workdir", "{vae}", "--config.data.split=test"],
     'written with data.split = "train", but this run\'s data.split is "test"'),
    ("sample-missing-run", ["sample", "--workdir", "{missing}", "--out", "{out}/s.png"], "holds no jaxgen run"),
    ("sample-workdir-is-a-file", ["sample", "--workdir", "{a_file}", "--out", "{out}/s.png"],
     "is a file, not a run folder"),
    ("sample-empty-folder", ["sample", "--workdir", "{empty}", "--out", "{out}/s.png"], "holds no jaxgen run"),
    ("sample-truncated-config", ["sample", "--workdir", "{truncated}", "--out", "{out}/s.png"],
     "cannot be read as JSON"),
    ("sample-foreign-config", ["sample", "--workdir", "{foreign}", "--out", "{out}/s.png"],
     "is not a jaxgen run's config"),
    ("sample-config-not-an-object", ["sample", "--workdir", "{json_list}", "--out", "{out}/s.png"],
     "is not a jaxgen run's config"),
    ("sample-no-checkpoint", ["sample", "--workdir", "{no_checkpoint}", "--out", "{out}/s.png"],
     "has no checkpoint yet"),
    ("sample-half-written-checkpoint", ["sample", "--workdir", "{half_written}", "--out", "{out}/s.png"],
     "checkpoint 9"),
    ("sample-config-of-another-model", ["sample", "--workdir", "{other_model_config}", "--out", "{out}/s.png"],
     'written with task = "vae", but this run\'s task is "classifier"'),
    ("sample-garbage-checkpoint", ["sample", "--workdir", "{garbage_checkpoint}", "--out", "{out}/s.npz"],
     "checkpoint 2 in"),
    ("eval-no-checkpoint", ["eval", "--workdir", "{no_checkpoint}"], "has no checkpoint yet"),
    ("export-missing-run", ["export", "--workdir", "{missing}", "--out", "{out}/model"], "holds no jaxgen run"),
    ("export-truncated-config", ["export", "--workdir", "{truncated}", "--out", "{out}/model"],
     "cannot be read as JSON"),
    ("export-no-checkpoint", ["export", "--workdir", "{no_checkpoint}", "--out", "{out}/model"],
     "has no checkpoint yet"),
    ("export-out-is-a-file", ["export", "--workdir", "{vae}", "--out", "{a_file}"], "is a file"),
    # export may point only a frozen model's field (unCLIP's CLIP) elsewhere; a VAE has none.
    ("export-model-override", ["export", "--workdir", "{vae}", "--out", "{out}/model", "--config.train.steps=3"],
     "none for this task"),
    ("report-missing-run", ["report", "--workdir", "{missing}"], "does not exist"),
    # ---- numeric flags and outputs ---------------------------------------------------------------------
    ("sample-num-zero", ["sample", "--workdir", "{vae}", "--num", "0", "--out", "{out}/s.png"],
     "--num must be at least 1"),
    ("sample-out-type", ["sample", "--workdir", "{vae}", "--out", "{out}/s.jpg"], "--out must end in .png"),
    ("sample-out-under-a-file", ["sample", "--workdir", "{vae}", "--out", "{a_file}/s.png"],
     "is a file, not a folder"),
    ("sample-out-is-a-folder", ["sample", "--workdir", "{vae}", "--out", "{folder.png}"], "is a folder"),
    ("sample-guidance-negative", ["sample", "--workdir", "{diffusion_config}", "--out", "{out}/s.png",
                                  "--config.sample.guidance=-1"], "sample.guidance must be a finite number >= 0"),
    ("sample-guidance-infinite", ["sample", "--workdir", "{diffusion_config}", "--out", "{out}/s.png",
                                  "--config.sample.guidance=1e999"], "sample.guidance must be a finite number >= 0"),
    ("sample-guidance-nan", ["sample", "--workdir", "{diffusion_config}", "--out", "{out}/s.png",
                             "--config.sample.guidance=nan"], "sample.guidance expects a float, not 'nan'"),
    ("sample-steps-zero", ["sample", "--workdir", "{diffusion_config}", "--out", "{out}/s.png",
                           "--config.sample.steps=0"], "sample.steps must be a positive integer"),
    ("sample-unknown-sample-field", ["sample", "--workdir", "{vae}", "--out", "{out}/s.png",
                                     "--config.sample.steps=3"], "no section 'sample'"),
    # ---- prompts and texts -----------------------------------------------------------------------------
    ("generate-empty-prompt", ["generate", "--workdir", "{vae}", "--prompt", "", "--out", "{out}/g.png"],
     "--prompt is empty"),
    ("generate-whitespace-prompt", ["generate", "--workdir", "{vae}", "--prompt", " \t  ", "--out", "{out}/g.png"],
     "--prompt is empty"),
    ("generate-10000-character-prompt", ["generate", "--workdir", "{vae}", "--prompt", TEN_THOUSAND,
                                         "--out", "{out}/g.png"], "10,000 characters long"),
    ("generate-control-characters", ["generate", "--workdir", "{vae}", "--prompt", "two red\x07 circles\x1b[2J",
                                     "--out", "{out}/g.png"], "control character U+0007"),
    ("generate-guidance-nan", ["generate", "--workdir", "{vae}", "--prompt", "a red circle", "--guidance", "nan",
                               "--out", "{out}/g.png"], "--guidance must be a finite number >= 0"),
    ("generate-guidance-negative", ["generate", "--workdir", "{vae}", "--prompt", "a red circle", "--guidance", "-2",
                                    "--out", "{out}/g.png"], "--guidance must be a finite number >= 0"),
    ("generate-steps-zero", ["generate", "--workdir", "{vae}", "--prompt", "a red circle", "--steps", "0",
                             "--out", "{out}/g.png"], "--steps must be at least 1"),
    ("generate-num-zero", ["generate", "--workdir", "{vae}", "--prompt", "a red circle", "--num", "0",
                           "--out", "{out}/g.png"], "--num must be at least 1"),
    ("generate-from-a-vae-run", ["generate", "--workdir", "{vae}", "--prompt", "a red circle", "--out", "{out}/g.png"],
     "does not generate images from text"),
    ("generate-unknown-pretrained", ["generate", "--pretrained", "no_such_model", "--prompt", "a red circle",
                                     "--out", "{out}/g.png"], "is not a pretrained model"),
    ("embed-nothing", ["embed", "--workdir", "{vae}"], "give at least one --text or --image"),
    ("embed-empty-text", ["embed", "--workdir", "{vae}", "--text", "  "], "--text is empty"),
    ("embed-10000-character-text", ["embed", "--workdir", "{vae}", "--text", TEN_THOUSAND], "10,000 characters"),
    ("embed-control-characters", ["embed", "--workdir", "{vae}", "--text", "a red\x00circle"],
     "control character U+0000"),
    ("embed-not-a-clip-run", ["embed", "--workdir", "{vae}", "--text", "a red circle"], "not a clip run"),
    ("embed-out-type", ["embed", "--workdir", "{vae}", "--text", "a red circle", "--out", "{out}/e.txt"],
     "--out must end in .npz"),
    # ---- image inputs ------------------------------------------------------------------------------------
    ("embed-image-missing", ["embed", "--workdir", "{vae}", "--image", "{missing}/x.png"], "does not exist"),
    ("embed-image-corrupt", ["embed", "--workdir", "{vae}", "--image", "{corrupt.png}"], "cannot read image"),
    ("embed-image-truncated", ["embed", "--workdir", "{vae}", "--image", "{cut.png}"], "cannot read image"),
    ("embed-image-is-a-folder", ["embed", "--workdir", "{vae}", "--image", "{empty}"], "is not a file"),
    ("zeroshot-images-missing", ["zeroshot", "--workdir", "{vae}", "--labels", "a,b", "--images", "{missing}"],
     "is not a folder"),
    ("zeroshot-images-empty", ["zeroshot", "--workdir", "{vae}", "--labels", "a,b", "--images", "{empty}"],
     "holds no .png or .jpg files"),
    ("zeroshot-images-corrupt", ["zeroshot", "--workdir", "{vae}", "--labels", "a,b", "--images", "{images_corrupt}"],
     "cannot read image"),
    ("zeroshot-one-label", ["zeroshot", "--workdir", "{vae}", "--labels", "cat", "--split", "test"],
     "at least two non-empty"),
    ("zeroshot-empty-label", ["zeroshot", "--workdir", "{vae}", "--labels", "cat,,dog", "--split", "test"],
     "at least two non-empty"),
    ("zeroshot-control-label", ["zeroshot", "--workdir", "{vae}", "--labels", "cat,d\x7fog", "--split", "test"],
     "control character U+007F"),
    ("zeroshot-template-without-slot", ["zeroshot", "--workdir", "{vae}", "--labels", "cat,dog", "--template",
                                        "a photo", "--split", "test"], "must contain {}"),
    ("zeroshot-not-a-clip-run", ["zeroshot", "--workdir", "{vae}", "--labels", "cat,dog", "--split", "test"],
     "not a clip run"),
]


def _fill(arg, paths):
    for name, path in paths.items():
        arg = arg.replace("{" + name + "}", path)
    return arg


def _run_and_check(capsys, argv, watched, expected):
    before = {w: _tree(w) for w in watched}
    code = main(argv)
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert code == 2, captured.err[-3000:]
    assert len(lines) == 1 and lines[0].startswith("jaxgen: error: "), captured.err[-3000:]
    assert "Traceback" not in captured.err
    if expected is not None:
        assert expected in lines[0]
    for w in watched:
        assert _tree(w) == before[w], f"{w} changed"
    return lines[0]


def test_the_table_has_forty_cases_or_more():
    assert len(CASES) >= 40 and len({c[0] for c in CASES}) == len(CASES)
    assert {c[1][0] for c in CASES} == {"train", "sample", "generate", "export", "eval", "report", "embed",
                                       "zeroshot", "configs"}


@pytest.mark.parametrize("argv, expected", [pytest.param(c[1], c[2], id=c[0]) for c in CASES])
def test_bad_input_is_one_sentence_and_writes_nothing(capsys, paths, argv, expected):
    argv = [_fill(a, paths) for a in argv]
    # Every folder or file the command was pointed at (or under), and the output folder.
    watched = {paths["out"], paths["new"], paths["missing"]}
    for a in argv:
        for name, path in paths.items():
            if a == path or a.startswith(path + os.sep):
                watched.add(path)
    watched.add(os.path.dirname(paths["vae"]))  # the whole shared folder: no stray files beside the runs
    _run_and_check(capsys, argv, sorted(watched), expected)


# ---- read-only folders (a private copy each: the flag would stop other tests too) -------------------


def _make_read_only(path):
    """Makes the folder `path` unwritable even for root; returns the function that undoes it."""
    if os.geteuid() == 0:
        if shutil.which("chattr") is None or subprocess.run(["chattr", "+i", path], capture_output=True).returncode:
            pytest.skip("cannot make a folder read-only for root here (no chattr +i)")
        return lambda: subprocess.run(["chattr", "-i", path], check=True)
    os.chmod(path, 0o555)
    return lambda: os.chmod(path, 0o755)


@pytest.mark.parametrize("command", ["train", "eval"])
def test_read_only_run_folder_is_one_sentence(capsys, paths, tmp_path, command):
    run = str(tmp_path / "run")
    if command == "train":
        os.makedirs(run)
        argv, expected = ["train", "vae_digits:quick", "--workdir", run], "is not writable"
    else:
        shutil.copytree(paths["vae"], run)
        argv, expected = ["eval", "--workdir", run], "is read-only"
    undo = _make_read_only(run)
    try:
        _run_and_check(capsys, argv, [run], expected)
    finally:
        undo()


def test_readers_leave_a_run_without_checkpoints_as_it_was(capsys, paths):
    """sample / eval / export / generate on a run that has no checkpoints/ yet create none."""
    run = paths["no_checkpoint"]
    for argv in (["sample", "--workdir", run, "--out", os.path.join(paths["out"], "s.png")],
                 ["eval", "--workdir", run], ["export", "--workdir", run, "--out", os.path.join(paths["out"], "m")],
                 ["generate", "--workdir", run, "--prompt", "a red circle",
                  "--out", os.path.join(paths["out"], "g.png")]):
        _run_and_check(capsys, argv, [run, paths["out"]], None)
        assert sorted(os.listdir(run)) == ["config.json"]

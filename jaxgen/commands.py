"""What each `jaxgen` sub-command does, as plain functions (the CLI parses, these work).

A command imports the jaxgen layers it needs (JAX among them) inside its function, so that each loads
only what it uses (`jaxgen report` never loads JAX).
"""
import json
import os
import sys
import time
import unicodedata
import warnings
from collections.abc import Sequence

import numpy as np
from PIL import Image, UnidentifiedImageError

from jaxgen import config as config_lib
from jaxgen import report as report_lib
from jaxgen.errors import UsageError

# A prompt or text longer than this is a mistake (a pasted file?): the text encoders read a few
# dozen tokens and would silently drop the rest.
MAX_TEXT_CHARS = 1000
# The demo runs these configs in order; a later family adds its name. The classifier comes
# first because other families' evaluations use its features.
DEMO_RUNS = ("classifier_digits", "vae_digits", "gan_digits", "cyclegan_shapes", "unet_shapes",
             "diffusion_digits_class", "clip_digits", "text2image_shapes")


def train(spec: str, overrides: list[str], workdir: str, quiet: bool = False) -> int:
    # here, not at the top: the CLI starts without JAX
    from jaxgen.train import loop

    config = config_lib.load(spec, overrides)
    result = loop.train(config, workdir, quiet=quiet)
    return 0 if result.stopped_by in (None, "SIGTERM") else 130


def sample(workdir: str, num: int, seed: int, out: str, overrides: list[str] = ()) -> int:
    # here, not at the top: the CLI starts without JAX
    import jax

    from jaxgen.eval.images import make_grid, save_png
    from jaxgen.tasks import runs

    if num < 1:
        raise UsageError(f"--num must be at least 1, not {num}.")
    kind = os.path.splitext(out)[1].lower()
    if kind not in (".png", ".npz"):
        raise UsageError(f"--out must end in .png (a grid) or .npz (raw arrays), not {out!r}.")
    _check_out(out)
    _, task, state = runs.restore_for_eval(workdir, overrides=overrides)
    result = {k: np.asarray(v) for k, v in task.sample(task.eval_params(state), jax.random.PRNGKey(seed), num).items()}
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    if kind == ".png":
        save_png(make_grid(result["images"]), out)
    else:
        tmp = out + ".tmp.npz"
        np.savez(tmp, **result)
        os.replace(tmp, out)
    print(f"wrote {num} samples to {out}")
    return 0


def generate(workdir: str | None, prompt: str, num: int, out: str, guidance: float | None = None,
             steps: int | None = None, seed: int = 0, sr_stages: Sequence[tuple[str, str]] = (),
             pretrained: str | None = None, method: str | None = None) -> int:
    """Images of `prompt` from a text-to-image run (text2image base stage or unclip; or a `pretrained`
    one), then up-sampled by each super-resolution stage of `sr_stages` in turn, ("workdir", run
    folder) or ("pretrained", name or folder) pairs (jaxgen.tasks.cascade.run_cascade with
    PRNGKey(seed)); a grid (.png) or raw arrays (.npz) of the last stage's images. guidance, steps,
    method: every stage's sample settings (None: each run's own)."""
    # here, not at the top: the CLI starts without JAX
    import jax

    from jaxgen.eval.images import make_grid, save_png
    from jaxgen.models.diffusion import sampling
    from jaxgen.tasks import cascade

    _check_text("--prompt", prompt)
    if method is not None and method not in sampling.METHODS:
        raise UsageError(f"--method must be one of {', '.join(sampling.METHODS)}, not {method!r}.")
    if guidance is not None and not (np.isfinite(guidance) and guidance >= 0):
        raise UsageError(f"--guidance must be a finite number >= 0 (1 = the conditional model), not {guidance}.")
    if steps is not None and steps < 1:
        raise UsageError(f"--steps must be at least 1, not {steps}.")
    if num < 1:
        raise UsageError(f"--num must be at least 1, not {num}.")
    kind = os.path.splitext(out)[1].lower()
    if kind not in (".png", ".npz"):
        raise UsageError(f"--out must end in .png (a grid) or .npz (raw arrays), not {out!r}.")
    stages = [_text_to_image_run(workdir, pretrained, "base")]
    for flag, source in sr_stages:
        stages.append(_text_to_image_run(source if flag == "workdir" else None,
                                         source if flag == "pretrained" else None, "sr"))
    cascade.check_cascade(stages)  # before any sampling: sizes that do not chain are one sentence
    with warnings.catch_warnings(record=True) as caught:  # the tokenizer's truncation warning, said once
        warnings.simplefilter("always")
        images, _ = cascade.run_cascade(stages, [prompt] * num, jax.random.PRNGKey(seed), guidance=guidance,
                                        steps=steps, method=method)
    for message in dict.fromkeys(str(w.message) for w in caught):
        print(f"jaxgen: warning: {message}", file=sys.stderr)
    images = images[-1]
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    if kind == ".png":
        save_png(make_grid(images), out)
    else:
        tmp = out + ".tmp.npz"
        np.savez(tmp, images=images, prompt=np.asarray(prompt))
        os.replace(tmp, out)
    print(f"wrote {num} images of {prompt!r} ({images.shape[1]}x{images.shape[2]}) to {out}")
    return 0


def _text_to_image_run(workdir: str | None, pretrained_name: str | None, stage: str):
    """(task, params) of a trained text-to-image run (text2image, unclip) in `workdir`, or of a
    pretrained one, of the given cascade stage ('base' or 'sr')."""
    # here, not at the top: the CLI starts without JAX
    from jaxgen.tasks import runs
    from jaxgen.train import pretrained

    if workdir is not None:
        _, task, state = runs.restore_for_eval(workdir)
        source, params = workdir, None
    else:
        _, task, params = pretrained.load(pretrained_name)
        source = f"pretrained model {pretrained_name!r}"
    if not hasattr(task, "text_to_image"):
        raise UsageError(f"{source} holds a {task.config.task} run, which does not generate images from text.")
    if task.stage != stage:
        flag = ("--sr_" if task.stage == "sr" else "--") + ("workdir" if workdir is not None else "pretrained")
        raise UsageError(f"{source} is a {'super-resolution' if task.stage == 'sr' else 'base'} stage; "
                         f"pass it as {flag}.")
    return task, (task.eval_params(state) if params is None else params)


def export(workdir: str, out: str, note: str = "", overrides: Sequence[str] = ()) -> int:
    """Writes the run's sampling params, config and provenance (with its eval.json scores when it
    has been evaluated) to the folder `out` (jaxgen.train.pretrained); `overrides` may point the
    fields naming a frozen model (unCLIP's CLIP) at an exported copy of it."""
    # here, not at the top: the CLI starts without JAX
    from jaxgen.train import pretrained

    if os.path.exists(out) and not os.path.isdir(out):
        raise UsageError(f"--out {out} is a file; export writes a folder there (replacing only a folder).")
    meta = {"note": note} if note else {}
    scores = os.path.join(workdir, "eval.json")
    if os.path.isfile(scores):
        try:
            with open(scores) as f:
                meta["eval"] = json.load(f)
        except ValueError as e:
            raise UsageError(f"{scores} is not valid JSON ({e}); run `jaxgen eval --workdir {workdir}` again.") from None
    path = pretrained.export(workdir, out, meta, overrides)
    print(f"wrote the sampling params of {workdir} to {path}")
    return 0


def _check_out(out: str) -> None:
    """UsageError unless the file `out` can be written: not a folder, under a folder (existing, or
    one that can be made) that this user may write. Writes nothing."""
    # here, not at the top: the CLI starts without JAX
    from jaxgen.train.checkpoint import nearest_existing

    if os.path.isdir(out):
        raise UsageError(f"--out {out} is a folder; give a file name.")
    folder = nearest_existing(os.path.dirname(os.path.abspath(out)))
    if not os.path.isdir(folder):
        raise UsageError(f"--out {out} cannot be written: {folder} is a file, not a folder.")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UsageError(f"--out {out} cannot be written: {folder} is read-only.")


def _check_text(flag: str, text: str) -> None:
    """UsageError for a text (prompt, label) that no text encoder should be given: empty, control
    characters (a prompt is one line of text), or longer than MAX_TEXT_CHARS."""
    if not text.strip():
        raise UsageError(f"{flag} is empty (or only whitespace); give some text, e.g. {flag} \"a red circle\".")
    control = next((c for c in text if unicodedata.category(c) == "Cc"), None)
    if control is not None:
        raise UsageError(f"{flag} contains the control character U+{ord(control):04X}; give one line of plain text.")
    if len(text) > MAX_TEXT_CHARS:
        raise UsageError(f"{flag} is {len(text):,} characters long; the text encoders read only a few dozen "
                         f"tokens, so keep it under {MAX_TEXT_CHARS:,} characters.")


def _check_writable_run(workdir: str, outputs: str) -> None:
    """UsageError unless `jaxgen eval` can write its `outputs` into the run folder (checked before the
    evaluation, which can take minutes)."""
    for folder in (workdir, os.path.join(workdir, "figures")):
        if os.path.isdir(folder) and not os.access(folder, os.W_OK | os.X_OK):
            raise UsageError(f"{folder} is read-only; `jaxgen eval` writes {outputs} there: make it writable "
                             f"or evaluate a copy of the run.")


def evaluate(workdir: str, overrides: list[str] = ()) -> int:
    # here, not at the top: the CLI starts without JAX
    from jaxgen.eval.images import save_png
    from jaxgen.tasks import runs
    from jaxgen.train.log import save_json

    config, task, state = runs.restore_for_eval(workdir, overrides=overrides)
    _check_writable_run(workdir, "eval.json and figures/")
    start = time.time()
    results = {"step": int(state.step), **task.evaluate(state), **_inception_metrics(task, state)}
    results["eval_seconds"] = round(time.time() - start, 1)
    captions = task.figure_captions()
    for name, image in task.figures(state).items():
        save_png(image, os.path.join(workdir, "figures", f"{name}.png"))
        if name in captions:
            with open(os.path.join(workdir, "figures", f"{name}.txt"), "w", encoding="utf-8") as f:
                f.write(captions[name])
    save_json(os.path.join(workdir, "eval.json"), results)
    print(f"evaluation of {config.name} at step {results['step']} ({workdir}):")
    for k, v in results.items():
        print(f"  {k:32s} {v:.5g}" if isinstance(v, float) else f"  {k:32s} {v}")
    return 0


def _inception_metrics(task, state) -> dict:
    """{"inception_fid", "inception_kid", "inception_precision", "inception_recall",
    "inception_num"}: eval.fid_samples of the family's samples (task.sample) against as many
    held-out images (task.fid_reference_images: those it should resemble, prepared as its training
    images, at the samples' size), in the standard FID Inception features. Empty
    for a family that makes no images, with eval.fid_samples = 0, or when the FID weights are not
    converted (said in one line)."""
    import jax

    from jaxgen.eval import inception

    num, reference = int(task.config.eval.get("fid_samples", 0)), task.fid_reference
    if not num or reference is None:
        return {}
    if not os.path.isfile(inception.default_params_path()):
        print(f"(no FID / KID: the FID Inception weights are not at {inception.default_params_path()}; "
              f"`python -m jaxgen.eval.inception convert --from FILE` once, see README)")
        return {}
    from jaxgen.eval.fid import FIDScorer

    generated = np.asarray(task.sample(task.eval_params(state), jax.random.PRNGKey(task.config.seed + 7), num)["images"])
    real = task.fid_reference_images(num, generated.shape[1])
    scores = FIDScorer().compare(generated, real)
    return {**{f"inception_{k}": v for k, v in scores.items()}, "inception_num": min(len(generated), len(real))}


def report(workdir: str) -> int:
    path = report_lib.write_run_report(workdir)
    print(f"wrote {path}")
    return 0


def demo(workdir: str, quick: bool = False) -> int:
    """Trains every family on the embedded data with small configs, evaluates, and reports."""
    # here, not at the top: the CLI starts without JAX
    from jaxgen.nn import bert
    from jaxgen.train import loop

    # The text-to-image run needs the text extra's pretrained encoder: say so now, not after the
    # other runs have trained.
    bert.default_minilm_path()
    start = time.time()
    runs = []
    for name in DEMO_RUNS:
        run_dir = os.path.join(workdir, name)
        # Each config's get_config("demo") is sized for the demo's 10-minute budget, "quick" for a
        # smoke run of a few steps.
        config = config_lib.load(f"{name}:{'quick' if quick else 'demo'}")
        if "classifier_workdir" in config.get("eval", {}):  # judged in the demo classifier's features
            config.eval.classifier_workdir = os.path.join(workdir, "classifier_digits")
        print(f"== {name}: {config.train.steps} steps -> {run_dir}", flush=True)
        loop.train(config, run_dir, quiet=True)
        evaluate(run_dir)
        runs.append(run_dir)
    path = report_lib.write_demo_report(workdir, runs, seconds=time.time() - start)
    print(f"demo finished in {time.time() - start:.0f} s; report: {path}")
    return 0


def _clip_run(workdir: str):
    # here, not at the top: the CLI starts without JAX
    from jaxgen.tasks import runs

    return runs.clip_scorer(workdir)


def _read_images(paths: list[str], channels: int) -> list[np.ndarray]:
    """Image files -> float arrays [H, W, channels] in [0, 1] (grey or RGB, as the model takes)."""
    out = []
    for path in paths:
        try:
            with Image.open(path) as im:
                out.append(np.asarray(im.convert("L" if channels == 1 else "RGB"), np.float32) / 255.0)
        except (OSError, UnidentifiedImageError) as e:
            raise UsageError(f"cannot read image {path} ({type(e).__name__}: {e}).") from None
    return [x[..., None] if x.ndim == 2 else x for x in out]


def _check_images(paths: list[str]) -> None:
    """UsageError for the first of `paths` that is not a readable image (checked before the run is
    loaded)."""
    for path in paths:
        if not os.path.isfile(path):
            raise UsageError(f"image {path} does not exist." if not os.path.exists(path)
                             else f"image {path} is not a file.")
        try:
            with Image.open(path) as im:
                im.load()  # decodes the pixels: a truncated file fails here, not later
        except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError) as e:
            reason = str(e).splitlines()[0][:200] if str(e) else ""
            raise UsageError(f"cannot read image {path} ({type(e).__name__}: {reason}).") from None


def _embed_image_files(scorer, paths: list[str]) -> np.ndarray:
    """Embeddings [N, E] of image files of any size (each resized to the model's resolution)."""
    channels = scorer.task.dataset.arrays["image"].shape[-1]
    return np.concatenate([scorer.images(x[None]) for x in _read_images(paths, channels)])


def embed(workdir: str, texts: list[str], images: list[str], out: str | None = None) -> int:
    if not texts and not images:
        raise UsageError("give at least one --text or --image to embed.")
    if out is not None and not out.endswith(".npz"):
        raise UsageError(f"--out must end in .npz, not {out!r}.")
    for text in texts:
        _check_text("--text", text)
    _check_images(images)
    if out is not None:
        _check_out(out)
    scorer = _clip_run(workdir)
    text_emb = scorer.texts(texts) if texts else np.zeros((0, scorer.config.model.embed_dim), np.float32)
    image_emb = _embed_image_files(scorer, images) if images else np.zeros_like(text_emb[:0])
    if out is not None:
        tmp = out + ".tmp.npz"
        np.savez(tmp, texts=np.asarray(texts, str), text_embeddings=text_emb, images=np.asarray(images, str),
                 image_embeddings=image_emb)
        os.replace(tmp, out)
        print(f"wrote {len(texts)} text and {len(images)} image embeddings to {out}")
        return 0
    fmt = dict(precision=4, suppress_small=True, max_line_width=10**6)
    for name, vec in [*zip(texts, text_emb), *zip(images, image_emb)]:
        print(f"{name!r}: {np.array2string(vec, **fmt)}")
    if texts and images:  # the CLIP score of every (text, image) pair
        # here, not at the top: the CLI starts without JAX
        from jaxgen.eval.contrastive import clip_score

        for i, t in enumerate(texts):
            scores = clip_score(np.repeat(text_emb[i:i + 1], len(images), 0), image_emb)
            print(f"clip score {t!r}: " + ", ".join(f"{p}={s:.1f}" for p, s in zip(images, scores)))
    return 0


def zeroshot(workdir: str, labels: str, templates: list[str], folder: str | None, split: str | None) -> int:
    """Zero-shot classification: each image goes to the label whose prompts' (ensembled) text
    embedding it is most similar to."""
    names = [x.strip() for x in labels.split(",")]
    if len(names) < 2 or not all(names):
        raise UsageError(f"--labels needs at least two non-empty, comma-separated names, not {labels!r}.")
    templates = templates or ["{}"]
    bad = [t for t in templates if "{}" not in t]
    if bad:
        raise UsageError(f"a --template must contain {{}} where the label goes, not {bad[0]!r}.")
    if folder is not None:
        if not os.path.isdir(folder):
            raise UsageError(f"--images {folder} is not a folder.")
        paths = sorted(os.path.join(folder, f) for f in os.listdir(folder)
                       if f.lower().endswith((".png", ".jpg", ".jpeg")))
        if not paths:
            raise UsageError(f"--images {folder} holds no .png or .jpg files.")
        _check_images(paths)
    for name in names:
        _check_text("a --labels name", name)
    scorer = _clip_run(workdir)
    weights = scorer.task.zero_shot_weights(scorer.params, [[t.replace("{}", n) for t in templates] for n in names])
    if folder is not None:
        emb = _embed_image_files(scorer, paths)
    else:
        # here, not at the top: the CLI starts without JAX
        from jaxgen import data

        dataset = data.load(scorer.config.data.name, split, scorer.config.data.get("data_dir"))
        emb = scorer.images(dataset.arrays["image"])
    logits = scorer.task.logit_scale(scorer.params) * emb @ weights.T
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    pred = probs.argmax(1)
    if folder is not None:
        for path, k, p in zip(paths, pred, probs.max(1)):
            print(f"{path}: {names[k]} ({p:.2f})")
        return 0
    counts = np.bincount(pred, minlength=len(names))
    print(f"{len(pred)} images of {scorer.config.data.name}/{split}: " +
          ", ".join(f"{n}={c}" for n, c in zip(names, counts)))
    if "label" in dataset.arrays and dataset.num_classes == len(names):
        # Label i names class i of the dataset.
        print(f"accuracy {np.mean(pred == dataset.arrays['label']):.4f} (label {names[0]!r} = class 0, ...)")
    return 0



def fid(a: str, b: str, batch_size: int = 50, out: str | None = None) -> int:
    """FID between two image sets, each an .npz (its "images", as `jaxgen sample` / `generate` write
    them), a folder of .png / .jpg files, or `data:<name>:<split>` (an embedded dataset's split),
    with the standard FID Inception features (jaxgen.eval.fid; the converted weights must be in the
    cache). Prints it, and writes {"fid", "num_a", "num_b", "a", "b"} to `out` (.json) if given."""
    if batch_size < 1:
        raise UsageError(f"--batch_size must be at least 1, not {batch_size}.")
    if out is not None and not out.endswith(".json"):
        raise UsageError(f"--out must end in .json, not {out!r}.")
    sets = [_fid_images(source) for source in (a, b)]
    # here, not at the top: the CLI starts without JAX
    from jaxgen.eval.fid import FIDScorer
    from jaxgen.train.log import save_json

    score = FIDScorer(batch_size=batch_size).fid(*sets)
    print(f"FID {score:.4f} ({len(sets[0])} images of {a} vs {len(sets[1])} of {b})")
    if out is not None:
        os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
        save_json(out, {"fid": score, "num_a": len(sets[0]), "num_b": len(sets[1]), "a": a, "b": b})
    return 0


def _fid_images(source: str) -> np.ndarray:
    """One `jaxgen fid` input as float images [N, H, W, 1 or 3] in [0, 1] (at least two)."""
    if source.startswith("data:"):
        name, _, split = source[len("data:"):].partition(":")
        if not name or not split:
            raise UsageError(f"a dataset input is data:<name>:<split>, e.g. data:shapes:test, not {source!r}.")
        # here, not at the top: the CLI starts without JAX
        from jaxgen import data
        from jaxgen.data import transforms

        d = data.load(name, split)
        images = np.asarray(transforms.to_unit(d.arrays["image"], d.num_levels))
    elif os.path.isdir(source):
        paths = sorted(os.path.join(source, f) for f in os.listdir(source) if f.lower().endswith((".png", ".jpg", ".jpeg")))
        _check_images(paths)
        images = _read_images(paths, 3)
        if len({x.shape for x in images}) > 1:
            raise UsageError(f"the images in {source} differ in size ({images[0].shape[:2]} and others); FID "
                             "batches one size per set: resize them first.")
        images = np.stack(images) if images else np.zeros((0, 1, 1, 3), np.float32)
    elif source.endswith(".npz") and os.path.isfile(source):
        try:
            with np.load(source) as f:
                images = np.asarray(f["images"])
        except (OSError, ValueError, KeyError) as e:
            raise UsageError(f"cannot read images from {source} ({type(e).__name__}: {e}); jaxgen fid reads the "
                             "'images' array that jaxgen sample and generate write.") from None
        if images.dtype != np.uint8:
            images = images.astype(np.float32)
            if images.size and (images.min() < 0.0 or images.max() > 1.0):
                raise UsageError(f"the images in {source} are floats outside [0, 1]; FID takes uint8 or [0, 1] images.")
    else:
        raise UsageError(f"{source} is neither an .npz file, a folder of images nor data:<name>:<split>.")
    if images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise UsageError(f"{source} holds images of shape {images.shape}; FID takes [N, H, W, 1 or 3].")
    if len(images) < 2:
        raise UsageError(f"{source} holds {len(images)} image(s); FID needs at least two per set (a covariance).")
    return images

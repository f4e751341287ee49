"""The HTML reports: a card per run (its picture and 1-3 headline numbers in words), then the details.

`write_demo_report` opens with one card per family: the family's sample grid or its task's natural
picture (reconstructions, translations, masks, prompts with their images) and its headline numbers,
each with the direction that is better and the reference it should be read against (a floor, a
ceiling, a baseline, chance). Every run's full metrics, training curves, figures and config follow,
collapsed. `write_run_report` shows one run's card, then all of its details.

One self-contained file (images inlined as base64 PNG), readable offline, at phone width, and
attachable anywhere. The headlines come from the keys each task's `evaluate` writes to eval.json; a
key that is missing (or not finite) leaves its number out, never the card.
"""
from __future__ import annotations

import base64
import glob
import html
import io
import json
import math
import os
import re
import statistics
from typing import NamedTuple

from jaxgen.errors import UsageError
from jaxgen.train import log

# The classical density baselines on the digits test split, shipped beside this module (package data).
BASELINES_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "baselines_digits.json")


# ------------------------------------------------------------------------------------ files
def _png_data(path_or_bytes) -> str:
    if isinstance(path_or_bytes, bytes):
        raw = path_or_bytes
    else:
        with open(path_or_bytes, "rb") as f:
            raw = f.read()
    return "data:image/png;base64," + base64.b64encode(raw).decode()


def _read_json(path: str) -> dict | None:
    """The JSON object at `path`, or None when it is missing or unreadable (a report never fails on it)."""
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _figure_caption(png_path: str) -> str:
    """The text saved beside a figure (<name>.txt, e.g. its prompt), else the figure's name."""
    text_path = png_path[:-4] + ".txt"
    if os.path.exists(text_path):
        with open(text_path, encoding="utf-8") as f:
            return f.read()
    return os.path.basename(png_path)[:-4]


def _figures(workdir: str) -> dict[str, str]:
    """{name: path} of the figures `jaxgen eval` saved under <workdir>/figures."""
    paths = sorted(glob.glob(os.path.join(workdir, "figures", "*.png")))
    return {os.path.basename(p)[:-4]: p for p in paths}


def _sample_grids(workdir: str) -> list[str]:
    """The sample grids saved during training (fixed noise), oldest first."""
    return sorted(glob.glob(os.path.join(workdir, "samples", "step_*.png")))


def _metrics(workdir: str) -> list[dict]:
    """The training metrics logged in <workdir> (jaxgen.train.log), without a line cut short by a crash."""
    records = []
    try:
        with open(os.path.join(workdir, log.METRICS_FILE)) as f:
            for line in f:
                try:
                    records.append(json.loads(line))
                except ValueError:
                    continue
    except OSError:
        pass
    return [r for r in records if isinstance(r, dict) and "step" in r]


def _curves_png(records: list[dict], names: list[str] | None = None, font: float = 9) -> bytes | None:
    """One small panel per logged metric (or per one of `names`) against the step; titles in `font` pt."""
    import matplotlib  # here: matplotlib takes a while to import, and only the curves need it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    logged = [k for k in records[0] if k not in ("step", "time")] if records else []
    names = [n for n in names if n in logged] if names is not None else logged
    if not names:
        return None
    cols = min(3, len(names))
    rows = -(-len(names) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 2.6 * rows), squeeze=False)
    steps = [r["step"] for r in records]
    for ax, name in zip(axes.flat, names):
        ax.plot(steps, [r.get(name, float("nan")) for r in records], lw=1.2)
        ax.set_title(name, fontsize=font)
        ax.set_xlabel("step", fontsize=font - 1)
        ax.tick_params(labelsize=font - 2)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    # Fixed margins, in inches scaled by the font (tight_layout measured every label first: 45 % of
    # the report's time for the quick demo's 8 runs): room for the tick labels on the left, the step
    # label below and the title above each panel.
    em = font / 72.0  # the font's size in inches
    width, height = 4.0 * cols, 2.6 * rows
    fig.subplots_adjust(left=6 * em / width, right=1 - 1.5 * em / width, bottom=4 * em / height,
                        top=1 - 2.2 * em / height, wspace=7 * em / (width / cols - 7 * em),
                        hspace=6.5 * em / (height / rows - 6.5 * em))
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return buf.getvalue()


# ------------------------------------------------------------------------------------ headlines
class Headline(NamedTuple):
    """One number in words: `label` `value`, which direction is better, and what to compare it with."""

    label: str
    value: str
    better: str | None = None     # "higher" | "lower" | None
    reference: str | None = None  # e.g. "floor 35.6: real test digits vs train, ..."


def _num(results: dict, key: str) -> float | None:
    """results[key] as a float when it is a finite number, else None."""
    v = results.get(key)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        return None
    return float(v)


def _pct(v: float) -> str:
    return f"{100 * v:.1f} %"


def _g(v: float) -> str:
    return f"{v:.3g}" if abs(v) < 1000 else f"{v:,.0f}"


def _digits_native(config: dict) -> bool:
    """Whether the run models the digits test split at their native 8x8 (where the baselines apply)."""
    data = config.get("data", {})
    return data.get("name") == "digits" and data.get("image_size") in (None, 8)


def _classical_baseline() -> str | None:
    """The best classical density model on the digits test split (BASELINES_FILE, written by
    `python -m experiments.baselines --ship`), as reference text; None when the file is not there."""
    results = _read_json(BASELINES_FILE)
    scored = {k: v["nats"] for k, v in (results or {}).items() if isinstance(v, dict) and _num(v, "nats") is not None}
    if not scored:
        return None
    name = min(scored, key=scored.get)
    return f"best classical baseline {scored[name]:.1f} nats ({name.replace('_', ' ')})"


def _nll(results: dict, config: dict, key: str, label: str) -> Headline | None:
    """A likelihood headline from <key>_nats, its standard error and <key>_bits_per_dim."""
    nats = _num(results, f"{key}_nats")
    if nats is None:
        return None
    se = _num(results, f"{key}_nats_se")
    se = se if se is not None else _num(results, f"{key}_nats_sem")
    bpd = _num(results, f"{key}_bits_per_dim")
    value = f"{nats:.1f}" + (f" ± {se:.1f}" if se is not None else "") + " nats/image"
    value += f" ({bpd:.3f} bits/dim)" if bpd is not None else ""
    return Headline(label, value, "lower", _classical_baseline() if _digits_native(config) else None)


def _sample_quality(results: dict, config: dict) -> dict[str, Headline]:
    """The digits-classifier judge's numbers (jaxgen.eval.features.ClassifierJudge.score), by kind."""
    out = {}
    digits = config.get("data", {}).get("name") == "digits"
    accuracy = _num(results, "class_accuracy")
    if accuracy is not None:
        out["accuracy"] = Headline("samples classified as the digit they were asked for", _pct(accuracy), "higher",
                                   "chance 10 %" if digits else None)
    chunked = [k for k in results if re.fullmatch(r"frechet_distance_\d+", k)]
    floor = _num(results, "frechet_floor_test_vs_train")
    noun = "digits" if digits else "images"
    floor_text = (f"floor {_g(floor)}: real test {noun} vs train, in the digits classifier's features"
                  if floor is not None else None)
    if chunked and _num(results, chunked[0]) is not None:  # the mean over chunks of the floor's size
        n = chunked[0].rsplit("_", 1)[1]
        out["fd"] = Headline(f"Frechet distance of {n} samples to the real {noun}", _g(_num(results, chunked[0])),
                             "lower", floor_text)
    elif _num(results, "frechet_distance") is not None:  # fewer samples than the floor's: biased upwards
        out["fd"] = Headline(f"Frechet distance of the samples to the real {noun} (too few samples to compare "
                             f"with the floor: reads high)", _g(_num(results, "frechet_distance")), "lower", floor_text)
    covered = _num(results, "classes_covered")
    if covered is not None:
        out["classes"] = Headline("digit classes among the samples" if digits else "classes among the samples",
                                  f"{covered:.0f} of 10" if digits else f"{covered:.0f}", "higher",
                                  "all 10 when no mode is dropped" if digits else None)
    recall = _num(results, "recall")
    if recall is not None:
        real = _num(results, "recall_test_vs_train")
        out["recall"] = Headline(f"recall (share of real {noun} the samples cover)", f"{recall:.2f}", "higher",
                                 f"real test {noun} vs train {real:.2f}" if real is not None else None)
    return out


def _classifier(results, config):
    acc, n = _num(results, "test_accuracy"), _num(results, "num_test")
    if acc is None:
        return []
    value = _pct(acc) + (f" ({round(acc * n)} of {n:.0f} images)" if n else "")
    digits = config.get("data", {}).get("name") == "digits"
    return [Headline("test accuracy", value, "higher", "chance 10 %" if digits else None)]


def _vae(results, config):
    iwae = sorted((int(m.group(1)), m.group(0)[:-5]) for k in results if (m := re.fullmatch(r"test_iwae(\d+)_nats", k)))
    nll = (_nll(results, config, iwae[-1][1], f"test NLL (importance-weighted bound, K = {iwae[-1][0]})")
           if iwae else None)
    nll = nll or _nll(results, config, "test_elbo", "test -ELBO (a bound on the NLL)")
    quality = _sample_quality(results, config)
    return [nll, quality.get("fd"), quality.get("classes")]


def _gan(results, config):
    q = _sample_quality(results, config)
    return [q.get("accuracy"), q.get("fd"), q.get("classes"), q.get("recall")]


def _diffusion(results, config):
    q = _sample_quality(results, config)
    bounds = [(_num(results, f"test_vlb_{v}_nats"), v) for v in ("large", "small")]
    bounds = sorted(b for b in bounds if b[0] is not None)
    nll = _nll(results, config, f"test_vlb_{bounds[0][1]}", "test NLL bound (diffusion ELBO)") if bounds else None
    return [q.get("accuracy"), q.get("fd"), nll, q.get("classes")]


def _cyclegan(results, config):
    out = []
    for key, source, target in (("x_to_y", "flat", "painted"), ("y_to_x", "painted", "flat")):
        err = _num(results, f"{key}_l1")
        if err is None:
            continue
        untranslated, mean_image = _num(results, f"{key[0]}_untranslated_l1"), _num(results, f"{key}_mean_image_l1")
        refs = [f"the untranslated input {untranslated:.3f}" if untranslated is not None else None,
                f"the {target} domain's mean image {mean_image:.3f}" if mean_image is not None else None]
        out.append(Headline(f"{source} → {target}: mean pixel error to the true {target} scene",
                            f"{err:.3f}", "lower", "; ".join(r for r in refs if r) or None))
    return out


def _segmentation(results, config):
    miou, shapes = _num(results, "test_miou"), _num(results, "test_miou_shapes")
    return [Headline("test mean IoU, background and 3 shapes", f"{miou:.3f}", "higher", "perfect: 1")
            if miou is not None else None,
            Headline("test mean IoU of the shapes alone", f"{shapes:.3f}", "higher", "perfect: 1")
            if shapes is not None else None]


def _clip(results, config):
    out = []
    for key, label in (("test_zeroshot_accuracy", "zero-shot test accuracy, from prompts alone"),
                       ("test_linear_probe_accuracy", "linear probe on its image embeddings")):
        if _num(results, key) is not None:
            out.append(Headline(label, _pct(_num(results, key)), "higher", "chance 10 %"))
    for style in ("full", "counting"):
        if _num(results, f"test_{style}_t2i_r1") is not None:
            out.append(Headline(f"text → image Recall@1, {style} captions of held-out scenes",
                                _pct(_num(results, f"test_{style}_t2i_r1")), "higher", None))
    match, mismatch = _num(results, "clip_score_matching"), _num(results, "clip_score_mismatched")
    if match is not None:
        out.append(Headline("CLIP score of matching caption-scene pairs", f"{match:.1f}", "higher",
                            f"mismatched pairs {mismatch:.1f}" if mismatch is not None else None))
    return out


_T2I_CATEGORIES = (("counting", "counting prompts"), ("colour_binding", "colour prompts"),
                   ("all", "all prompts"))


def _text_to_image(results, config):
    out = []
    for key, label in _T2I_CATEGORIES:
        v, ceiling = _num(results, f"t2i_{key}"), _num(results, f"t2i_ceiling_{key}")
        if v is not None:
            out.append(Headline(f"{label}: images that show what was asked", _pct(v), "higher",
                                f"ceiling {_pct(ceiling)}: real scenes parsed at this size"
                                if ceiling is not None else None))
    sr, bilinear, real = (_num(results, f"{k}_exact_scene") for k in ("sr", "bilinear", "real"))
    if sr is not None:  # the super-resolution stage
        refs = [f"bilinear up-sampling {_pct(bilinear)}" if bilinear is not None else None,
                f"real scenes {_pct(real)}" if real is not None else None]
        out.append(Headline("exact scene parsed from the super-resolved test scenes", _pct(sr), "higher",
                            "; ".join(r for r in refs if r) or None))
    return out


def _unclip(results, config):
    out = []
    true, other = _num(results, "prior_cosine_true"), _num(results, "prior_cosine_other")
    if true is not None:
        out.append(Headline("cosine of the prior's image embedding to the caption's own scene", f"{true:.3f}",
                            "higher", f"to another scene {other:.3f}" if other is not None else None))
    score, real = _num(results, "clip_score"), _num(results, "clip_score_real")
    if score is not None:
        out.append(Headline("CLIP score of generated images with their captions", f"{score:.1f}", "higher",
                            f"real scenes {real:.1f}" if real is not None else None))
    return out + _text_to_image(results, config)[-1:]


_HEADLINES = {"classifier": _classifier, "vae": _vae, "gan": _gan, "diffusion": _diffusion, "cyclegan": _cyclegan,
              "segmentation": _segmentation, "clip": _clip, "text2image": _text_to_image, "unclip": _unclip}


def headlines(results: dict, config: dict) -> list[Headline]:
    """At most three headline numbers of a run, from its eval.json `results` and config.json `config`."""
    make = _HEADLINES.get(config.get("task"))
    return [h for h in (make(results, config) if make else []) if h is not None][:3]


# ------------------------------------------------------------------------------------ pictures
_FAMILY = {"classifier": "Classifier", "vae": "Variational auto-encoder", "gan": "GAN",
           "cyclegan": "CycleGAN (flat ↔ painted)", "segmentation": "U-Net segmentation",
           "diffusion": "Diffusion model", "clip": "CLIP (contrastive text-image)",
           "text2image": "Imagen-style text-to-image", "unclip": "unCLIP (DALL-E 2) text-to-image"}
# The picture that shows each task best, in order of preference: an eval figure's name, "prompt_"
# (one figure per prompt, captioned), or TRAINING_SAMPLES (the newest grid saved in training). A run
# with none of its task's pictures gets its first figure, its newest sample grid or its curves.
TRAINING_SAMPLES = "<training samples>"
_PICTURES = {"vae": (TRAINING_SAMPLES, "reconstructions"), "gan": ("samples_per_class", "samples"),
             "diffusion": ("samples",), "cyclegan": ("flat_to_painted",), "segmentation": ("segmentation",),
             "text2image": ("prompt_", "super_resolution"), "unclip": ("text_to_image",)}
_NOTES = {"reconstructions": "odd rows: test digits; even rows: their reconstructions",
          "interpolations": "each row: the decoder's path from one test digit to another through the latent space",
          "samples_per_class": "samples, row r asked for digit r",
          "flat_to_painted": "8 held-out scenes; rows: flat input, translated to painted, the true painted "
                             "scene, translated back",
          "painted_to_flat": "8 held-out scenes; rows: painted input, translated to flat, the true flat scene, "
                             "translated back",
          "text_to_image": "one row of samples per held-out caption",
          "variations": "each row: a real test scene, then seven variations of its CLIP embedding",
          "segmentation": "each triple: test scene, true mask, predicted mask",
          "forward_process": "test digits noised at ten levels of the forward process, left to right",
          "super_resolution": "rows: bilinear up-sampling of the low-resolution input, the stage's output, "
                              "the real scene"}


def _figure_note(name: str, path: str, results: dict) -> str:
    if os.path.exists(path[:-4] + ".txt"):
        return _figure_caption(path)
    if name == "samples":
        return "samples, row r asked for digit r" if "class_accuracy" in results else "samples"
    return _NOTES.get(name, name.replace("_", " "))


def _newest_grid(workdir: str) -> list[tuple[str, str]]:
    grids = _sample_grids(workdir)
    if not grids:
        return []
    return [(_png_data(grids[-1]), f"samples at step {int(os.path.basename(grids[-1])[5:-4])} (fixed noise)")]


def card_pictures(workdir: str, task: str | None, results: dict) -> list[tuple[str, str]]:
    """[(png data URL, caption)] for a run's card: its task's preferred picture (for text-to-image,
    one prompt per category with its images), else its first eval figure, its newest sample grid, or
    its training curves; [] when the run has none of these."""
    figures = _figures(workdir)
    for choice in _PICTURES.get(task, ()):
        if choice == TRAINING_SAMPLES and _newest_grid(workdir):
            return _newest_grid(workdir)
        if choice.endswith("_"):  # a figure per prompt: the first of each category, at most four
            shown = {}
            for name, path in figures.items():
                caption = _figure_note(name, path, results) if name.startswith(choice) else None
                if caption and len(shown) < 4:
                    shown.setdefault(caption.partition(":")[0], (_png_data(path), caption))
            if shown:
                return list(shown.values())
        elif choice in figures:
            return [(_png_data(figures[choice]), _figure_note(choice, figures[choice], results))]
    if figures:
        name, path = next(iter(figures.items()))
        return [(_png_data(path), _figure_note(name, path, results))]
    if _newest_grid(workdir):
        return _newest_grid(workdir)
    records = _metrics(workdir)
    main = [k for k in ("loss", "accuracy") if records and k in records[-1]]
    curves = _curves_png(records, main or None, font=14)  # shown at about half size on the card
    return [(_png_data(curves), "training curves")] if curves else []


# ------------------------------------------------------------------------------------ HTML
def _table(rows: dict) -> str:
    cells = "".join(f"<tr><td>{html.escape(str(k))}</td><td>{_fmt(v)}</td></tr>" for k, v in rows.items())
    return f"<table>{cells}</table>"


def _fmt(v) -> str:
    return f"{v:.5g}" if isinstance(v, float) else html.escape(str(v))


def _run_info(workdir: str) -> tuple[dict, dict | None, str]:
    """(config, eval results or None, the run's name) of a run directory."""
    config = _read_json(os.path.join(workdir, "config.json")) or {}
    results = _read_json(os.path.join(workdir, "eval.json"))
    return config, results, config.get("name", os.path.basename(os.path.normpath(workdir)))


def _title(workdir: str) -> str:
    """The run's family and dataset in words, e.g. "Variational auto-encoder on digits (vae_digits)"."""
    config, _, name = _run_info(workdir)
    dataset = str(config.get("data", {}).get("name", "")).split("/")[0]
    family = _FAMILY.get(config.get("task"), config.get("task") or name)
    return family + (f" on {dataset}" if dataset else "") + f" ({name})"


def run_card(workdir: str) -> str:
    """One run's card: family, picture(s), headline numbers."""
    config, results, name = _run_info(workdir)
    task = config.get("task")
    title = _title(workdir).removesuffix(f" ({name})")
    step = (results or {}).get("step")
    sub = name + (f" · {step:,} steps" if isinstance(step, int) else "")
    pictures = "".join(f"<figure><img src='{src}' alt='{html.escape(caption)}'><figcaption>{html.escape(caption)}"
                       f"</figcaption></figure>" for src, caption in card_pictures(workdir, task, results or {}))
    if results is None:
        numbers = "<p class=none>not evaluated yet: run <code>jaxgen eval</code> on this run.</p>"
    else:
        items = []
        for h in headlines(results, config):
            better = (f"<span class=better>{'↑' if h.better == 'higher' else '↓'} {h.better} is better</span>"
                      if h.better else "")
            ref = f"<span class=ref>{'; ' if better else ''}{html.escape(h.reference)}</span>" if h.reference else ""
            items.append(f"<li><span class=label>{html.escape(h.label)}</span> "
                         f"<span class=value>{html.escape(h.value)}</span><span class=note>{better}{ref}</span></li>")
        numbers = f"<ul class=numbers>{''.join(items)}</ul>" if items else ""
    return (f"<section class=card><h2>{html.escape(title)}</h2><p class=sub>{html.escape(sub)}</p>"
            f"<div class=pictures>{pictures}</div>{numbers}</section>")


_THROUGHPUT = (("steps_per_s", "steps/s"), ("images_per_s", "images/s"),
               ("tflops_per_device", "TFLOP/s per device"), ("mfu", "MFU (model FLOPs utilization)"))


def _throughput(records: list[dict]) -> dict:
    """{label: median} of the speed metrics the loop logs (jaxgen.train.loop; MFU as a percentage).
    The median, not the mean: the first interval includes compilation, a resumed run's first one
    restoring."""
    out = {}
    for key, label in _THROUGHPUT:
        values = [r[key] for r in records if isinstance(r.get(key), (int, float)) and math.isfinite(r[key])]
        if values:
            m = float(statistics.median(values))
            out[label] = f"{100 * m:.1f} %" if key == "mfu" else m
    return out


def run_section(workdir: str) -> str:
    """The HTML body for one run directory: every metric, training curves, figures, samples, config."""
    config, results, name = _run_info(workdir)
    parts = [f"<p class=dir>{html.escape(os.path.abspath(workdir))}</p>"]
    if results is not None:
        parts += ["<h3>Evaluation</h3>", _table(results)]
    records = _metrics(workdir)
    speed = _throughput(records)
    if speed:
        parts += ["<h3>Throughput (median over the logged intervals)</h3>", _table(speed)]
    curves = _curves_png(records)
    if curves:
        parts += ["<h3>Training curves</h3>", f"<img class=curves src='{_png_data(curves)}' alt='training curves'>"]
    figures = _figures(workdir)
    if figures:
        cells = "".join(f"<figure><img src='{_png_data(f)}'><figcaption>{html.escape(_figure_caption(f))}"
                        f"</figcaption></figure>" for f in figures.values())
        parts += ["<h3>Figures</h3>", f"<div class=grids>{cells}</div>"]
    grids = _sample_grids(workdir)
    if grids:
        shown = grids if len(grids) <= 6 else [grids[round(i * (len(grids) - 1) / 5)] for i in range(6)]
        figures = "".join(f"<figure><img src='{_png_data(g)}'><figcaption>step "
                          f"{int(os.path.basename(g)[5:-4])}</figcaption></figure>" for g in shown)
        parts += ["<h3>Samples over training (fixed noise)</h3>", f"<div class=grids>{figures}</div>"]
    if config:
        parts += ["<h3>Config</h3>", f"<pre>{html.escape(json.dumps(config, indent=2, sort_keys=True))}</pre>"]
    return "\n".join(parts)


_STYLE = """*{box-sizing:border-box}
body{font-family:system-ui,sans-serif;max-width:1200px;margin:0 auto;padding:12px;color:#222;line-height:1.35}
h1{font-size:1.5em;margin:.3em 0}.lead{color:#555;margin:.2em 0 1em}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(280px,1fr));gap:14px}
.card{border:1px solid #ddd;border-radius:8px;padding:10px 12px;background:#fff}
.card h2{font-size:1.05em;margin:0}.sub{color:#777;font-size:12px;margin:2px 0 8px;font-family:monospace}
.pictures{display:flex;flex-direction:column;gap:6px}
img{max-width:100%;height:auto;image-rendering:pixelated}
.card img{display:block;margin:0 auto;width:auto;max-width:100%;max-height:260px}
figure{margin:0}figcaption{font-size:12px;color:#555;text-align:center}
.numbers{list-style:none;padding:0;margin:8px 0 0}.numbers li{margin:0 0 8px;font-size:14px}
.value{font-weight:700;font-size:1.15em}.note{display:block;font-size:12px;color:#666}
.better{color:#2a6f2a}.none{color:#a33;font-size:13px}
details{border-top:1px solid #ddd;padding:6px 0}summary{cursor:pointer;font-weight:600}
table{border-collapse:collapse;margin:.5em 0;display:block;overflow-x:auto}
td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px}
.grids{display:flex;flex-wrap:wrap;gap:12px}.grids figure{max-width:100%}img.curves{image-rendering:auto}
pre{background:#f5f5f5;padding:8px;font-size:11px;max-height:300px;overflow:auto}
.dir{color:#777;font-size:12px;word-break:break-all}"""


def _page(title: str, body: str) -> str:
    return (f"<!doctype html><html lang=en><head><meta charset='utf-8'>"
            f"<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head>"
            f"<body><h1>{html.escape(title)}</h1>\n{body}\n</body></html>")


def _write(path: str, text: str) -> str:
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)
    return path


def write_run_report(workdir: str) -> str:
    """<workdir>/report.html: the run's card, then every metric, curves, figures and config."""
    if not os.path.isdir(workdir):
        raise UsageError(f"{workdir} does not exist.")
    body = f"<div class=cards>{run_card(workdir)}</div>\n{run_section(workdir)}"
    return _write(os.path.join(workdir, "report.html"), _page("jaxgen run report", body))


def _duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes} min {secs:02d} s" if minutes else f"{secs} s"


def write_demo_report(workdir: str, runs: list[str], seconds: float) -> str:
    """<workdir>/report.html: one card per run (picture and headline numbers), then each run's
    details (every metric, curves, figures, config), collapsed."""
    cards = "".join(run_card(r) for r in runs)
    details = "".join(f"<details><summary>{html.escape(_title(r))}: every metric, training curves, "
                      f"figures, config</summary>{run_section(r)}</details>" for r in runs)
    body = (f"<p class=lead>{len(runs)} families trained and evaluated on the embedded data in "
            f"{_duration(seconds)}. Each card shows what the model makes and the numbers to read first; "
            f"the details follow below.</p><div class=cards>{cards}</div>"
            f"<h2 class=details>Details</h2>{details}")
    os.makedirs(workdir, exist_ok=True)
    return _write(os.path.join(workdir, "report.html"), _page("jaxgen demo", body))

"""The demo report: one card per family (an inline picture and its headline numbers in words), then
every run's details, collapsed; a family whose eval lacks a key gets its card without that number."""
import json
import math
from html.parser import HTMLParser

import numpy as np
from PIL import Image

from jaxgen import report


def _png(path, size=(24, 16), seed=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)


def _run(root, name, task, data, results, figures=(), captions=None, grids=()):
    run = root / name
    run.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"name": name, "task": task, "data": data,
                                                 "train": {"steps": 100}}))
    if results is not None:
        (run / "eval.json").write_text(json.dumps(results))
    for i, figure in enumerate(figures):
        _png(run / "figures" / f"{figure}.png", seed=i)
    for figure, text in (captions or {}).items():
        (run / "figures" / f"{figure}.txt").write_text(text)
    for step in grids:
        _png(run / "samples" / f"step_{step:07d}.png", seed=step)
    (run / "metrics.jsonl").write_text("".join(json.dumps({"step": s, "time": 0.0, "loss": 1.0 / s}) + "\n"
                                               for s in (10, 20, 30)))
    return str(run)


def _fake_demo(root):
    vae = _run(root, "vae_digits", "vae", {"name": "digits"},
               {"step": 100, "test_iwae1000_nats": 83.13, "test_iwae1000_nats_se": 0.68,
                "test_iwae1000_bits_per_dim": 1.874, "test_elbo_nats": 86.48, "frechet_distance": 118.0,
                "frechet_distance_360": 120.04, "frechet_floor_test_vs_train": 35.61, "classes_covered": 10,
                "eval_seconds": 3.0},
               figures=("reconstructions", "interpolations"), grids=(50, 100))
    cyclegan = _run(root, "cyclegan_shapes", "cyclegan", {"name": "shapes/tiny"},
                    {"step": 100, "x_to_y_l1": 0.0504, "x_untranslated_l1": 0.564, "x_to_y_mean_image_l1": 0.040,
                     "y_to_x_l1": 0.0581, "y_untranslated_l1": 0.564, "y_to_x_mean_image_l1": 0.065},
                    figures=("flat_to_painted", "painted_to_flat"))
    t2i = _run(root, "text2image_shapes", "text2image", {"name": "shapes/t2i", "image_size": 16},
               {"step": 100, "t2i_counting": 0.547, "t2i_ceiling_counting": 0.83, "t2i_colour_binding": 0.813,
                "t2i_ceiling_colour_binding": 0.9, "t2i_all": float("nan")},  # NaN: left out, not a crash
               figures=("prompt_0", "prompt_1", "prompt_2"),
               captions={"prompt_0": "counting: two red circles", "prompt_1": "counting: one blue square",
                         "prompt_2": "position: a green triangle at the top left"})
    # A family whose eval.json lacks every headline key, and one never evaluated: cards all the same.
    gan = _run(root, "gan_digits", "gan", {"name": "digits"}, {"step": 100, "d_fake": 0.4}, figures=("samples",))
    unet = _run(root, "unet_shapes", "segmentation", {"name": "shapes/tiny"}, None, figures=("segmentation",))
    return [vae, cyclegan, t2i, gan, unet]


class _Page(HTMLParser):
    """The cards (their text and image sources) and, in document order, where the details start."""

    def __init__(self):
        super().__init__()
        self.cards, self.depth, self.events, self.viewport = [], 0, [], False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "meta" and attrs.get("name") == "viewport":
            self.viewport = "width=device-width" in attrs.get("content", "")
        if self.depth:
            self.depth += tag not in ("img", "meta", "br")
        elif tag == "section" and attrs.get("class") == "card":
            self.depth = 1
            self.cards.append({"text": "", "images": []})
            self.events.append("card")
        if tag == "details":
            self.events.append("details-open" if "open" in attrs else "details")
        if tag == "img" and self.depth:
            self.cards[-1]["images"].append(attrs["src"])

    def handle_endtag(self, tag):
        if self.depth and tag not in ("img", "meta", "br"):
            self.depth -= 1

    def handle_data(self, data):
        if self.depth:
            self.cards[-1]["text"] += data


def _parse(path) -> _Page:
    page = _Page()
    with open(path, encoding="utf-8") as f:
        page.feed(f.read())
    return page


def test_demo_report_opens_with_one_card_per_family_then_collapsed_details(tmp_path):
    runs = _fake_demo(tmp_path / "demo")
    page = _parse(report.write_demo_report(str(tmp_path / "demo"), runs, seconds=301.0))
    assert page.viewport
    assert len(page.cards) == len(runs)
    for card in page.cards:
        assert card["images"] and all(src.startswith("data:image/png;base64,") for src in card["images"])
    vae, cyclegan, t2i, gan, unet = (" ".join(c["text"].split()) for c in page.cards)
    # Headline numbers in words, each with its direction and reference.
    assert "test NLL" in vae and "83.1 ± 0.7 nats/image (1.874 bits/dim)" in vae and "lower is better" in vae
    assert "best classical baseline 108.1 nats" in vae  # jaxgen/baselines_digits.json
    assert "Frechet distance" in vae and "120" in vae and "floor 35.6" in vae
    assert "10 of 10" in vae
    assert "samples at step 100" in vae  # the newest sample grid is the VAE's picture
    assert "flat → painted" in cyclegan and "0.050" in cyclegan and "untranslated input 0.564" in cyclegan
    assert "painted → flat" in cyclegan and "0.058" in cyclegan
    assert "54.7 %" in t2i and "ceiling 83.0 %" in t2i and "81.3 %" in t2i and "higher is better" in t2i
    assert "all prompts" not in t2i  # its value was NaN
    # One prompt per category, with its caption.
    assert len(page.cards[2]["images"]) == 2 and "counting: two red circles" in t2i and "position:" in t2i
    assert "is better" not in gan and "GAN" in gan  # no headline key: a card with its picture, no numbers
    assert "not evaluated" in unet
    # The cards come first; each run's details follow, collapsed.
    assert page.events == ["card"] * len(runs) + ["details"] * len(runs)
    html = (tmp_path / "demo" / "report.html").read_text()
    details = html[html.index("<details"):]
    assert "x_to_y_mean_image_l1" in details and "&quot;task&quot;" in details  # every metric, the config
    assert "5 min 01 s" in html


def test_run_report_shows_its_card_then_everything(tmp_path):
    run = _fake_demo(tmp_path)[0]
    page = _parse(report.write_run_report(run))
    assert len(page.cards) == 1 and "83.1" in page.cards[0]["text"]
    text = open(report.write_run_report(run), encoding="utf-8").read()
    assert "test_elbo_nats" in text and text.count("data:image/png;base64,") >= 5


def test_headlines_take_what_the_eval_has():
    config = {"task": "diffusion", "data": {"name": "digits"}}
    # A quick run: fewer samples than the floor's chunk, so the chunked distance is NaN.
    results = {"class_accuracy": 0.85, "frechet_distance_360": float("nan"), "frechet_distance": 152.3,
               "frechet_floor_test_vs_train": 35.6, "classes_covered": 10}
    shown = report.headlines(results, config)
    assert [h.value for h in shown] == ["85.0 %", "152", "10 of 10"]
    assert shown[0].better == "higher" and shown[0].reference == "chance 10 %"
    assert shown[1].better == "lower" and "reads high" in shown[1].label
    assert report.headlines({}, config) == [] and report.headlines({"x": 1}, {"task": "unknown"}) == []
    assert report.headlines({"test_accuracy": math.nan}, {"task": "classifier"}) == []
    assert len(report.headlines({f"t2i_{k}": 0.5 for k in ("counting", "colour_binding", "all", "position")},
                                {"task": "text2image"})) == 3

"""The prompt-suite score of a text-to-image model, shared by every text-to-image family.

`prompt_suite_scores(make_images, settings, train_captions, reference, seed, clip)` draws the suite of
jaxgen.eval.prompts (settings.prompts_per_category prompts per category, settings.prompt_seed),
generates settings.images_per_prompt images of each prompt through `make_images(texts, rng)` in
batches of settings.batch_size (batch i keyed PRNGKey(seed + i), the last batch padded so that one
compiled program serves every batch), parses them with jaxgen.eval.scene after pixel repetition to
the parser's 32x32 grid, and reports:

  t2i_<category>, t2i_all         the fraction of images that satisfy their prompt, per category of the
                                  suite and over all of them;
  t2i_<category>_seen / _rare / _held_out
                                  the same by the prompt's support in the training captions
                                  (jaxgen.eval.prompts.support_groups: >= 20 captions state its
                                  combination, 1-19, none);
  t2i_<category>_content          shape-agnostic: colours, numbers and cells right (what the parser
                                  cannot misread at 16x16);
  t2i_counting_n<n>[_<group>]     counting accuracy per requested count n;
  t2i_counting_confusion_n<n>_parsed<m>
                                  images asked for n objects with m of the requested colour parsed;
  t2i_ceiling_<key>               each accuracy above for real scenes that satisfy the prompts,
                                  rendered, brought to the generated size and parsed the same way
                                  (jaxgen.eval.prompts.real_scene_ceiling): what a perfect model
                                  scores at that size (1.0 at 32x32; at 16x16 the parser reads some
                                  small circles as squares);
  t2i_num_images                  images scored;
  t2i_parser_exact_real           the parser's exact-scene accuracy on real test scenes brought to
                                  the generated images' size;
  t2i_clip_score, t2i_clip_score_mismatched
                                  with a CLIP run (`clip`, the run of settings.clip_workdir), the
                                  CLIP score of each image against its own prompt and against
                                  another prompt's (the gap to read).

`make_images` may also return several named image sets made from the same texts and keys (e.g. the
base stage of a cascade and the super-resolution of those very images): each set `name` is scored
on its own, under t2i_<name>_<metric>.

This module is the eval layer: it knows nothing of tasks or training, only images and captions (the
caller loads the CLIP run: jaxgen.tasks.cascade.prompt_scores).
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxgen.data import transforms
from jaxgen.data.pipeline import Dataset
from jaxgen.eval import prompts as prompts_lib
from jaxgen.eval import scene as scene_lib
from jaxgen.eval.contrastive import CLIPScorer, clip_score

ImageSets = np.ndarray | dict[str, np.ndarray]
#: (texts [n], rng) -> images float [n, H, W, C] in [0, 1], or {name: images [n, H_k, W_k, C]}
MakeImages = Callable[[list[str], jax.Array], ImageSets]
# Real scenes per prompt for the ceiling: enough that it moves by about a point between seeds.
CEILING_IMAGES_PER_PROMPT = 8


def prompt_suite_scores(make_images: MakeImages, settings: Mapping, train_captions: Iterable[str],
                        reference: Dataset, seed: int, clip: CLIPScorer | None = None) -> dict[str, float]:
    """The suite's scores of `make_images` (see the module docstring for the metrics).

    settings: the eval config section, read for prompts_per_category (0 skips the suite: {}),
      images_per_prompt, prompt_seed and batch_size.
    train_captions: every caption the model was trained on (every drawn style), which decides the
      held-out prompts.
    reference: the real scenes (the test split) the parser's ceiling is measured on.
    seed: batch i of images is made with PRNGKey(seed + i).
    clip: the CLIP run that scores the images against their prompts (None: no CLIP score).
    """
    per_category, per_prompt = int(settings["prompts_per_category"]), int(settings["images_per_prompt"])
    if per_category <= 0:
        return {}
    suite = prompts_lib.prompt_suite(per_category, seed=int(settings["prompt_seed"]))
    texts = [p.text for p in suite for _ in range(per_prompt)]
    generated = generate_in_batches(make_images, texts, int(settings["batch_size"]), seed)
    support = prompts_lib.prompt_support(suite, train_captions)
    text_emb = clip.texts(texts) if clip is not None else None
    ceilings: dict[int, dict[str, float]] = {}  # by image size: image sets of one size share them
    out = {}
    for name, images in (generated.items() if isinstance(generated, dict) else [("", generated)]):
        prefix = f"t2i_{name}_" if name else "t2i_"
        scores = suite_accuracy(images, suite, per_prompt, support)
        size = images.shape[1]
        if size not in ceilings:
            ceiling = prompts_lib.real_scene_ceiling(suite, size, CEILING_IMAGES_PER_PROMPT,
                                                     seed=int(settings["prompt_seed"]), support=support)
            ceilings[size] = {"parser_exact_real": parser_ceiling(reference, size),
                              **{f"ceiling_{k}": v for k, v in _flat(ceiling).items() if "confusion" not in k}}
        scores.update(num_images=len(images), **ceilings[size])
        if clip is not None:
            image_emb = clip.images(images)
            scores["clip_score"] = float(clip_score(image_emb, text_emb).mean())
            # Each image against the next prompt's text: the score of a wrong prompt.
            scores["clip_score_mismatched"] = float(clip_score(image_emb, np.roll(text_emb, per_prompt, 0)).mean())
        out.update({prefix + k: v for k, v in scores.items()})
    return out


def generate_in_batches(make_images: MakeImages, texts: Sequence, batch_size: int, seed: int) -> ImageSets:
    """make_images over `texts` (prompts, or any per-image items such as row indices) in batches of
    batch_size, batch i with key PRNGKey(seed + i); the last batch is padded with its last item (one
    compiled shape) and the padding dropped. Returns what make_images returns, over all items:
    images [len(texts), ...] or {name: images [len(texts), ...]}."""
    texts = list(texts)
    batches = []
    for i, start in enumerate(range(0, len(texts), batch_size)):
        chunk = texts[start:start + batch_size]
        out = make_images(chunk + [chunk[-1]] * (batch_size - len(chunk)), jax.random.PRNGKey(seed + i))
        batches.append(jax.tree.map(lambda x, n=len(chunk): np.asarray(x)[:n], out))
    return jax.tree.map(lambda *xs: np.concatenate(xs), *batches)


def suite_accuracy(images: np.ndarray, suite: Sequence[prompts_lib.Prompt], per_prompt: int,
                   support: np.ndarray) -> dict[str, float]:
    """Images [P * per_prompt, H, W, 3] in [0, 1], prompt-major (rows j * per_prompt ... belong to
    suite[j]), with the prompts' training support int [P] -> jaxgen.eval.prompts.suite_scores with
    flat key names ("counting/seen" -> "counting_seen")."""
    scenes = scene_lib.parse_scenes(scene_lib.parse_ready(np.asarray(images)))
    per = [scenes[j * per_prompt:(j + 1) * per_prompt] for j in range(len(suite))]
    return _flat(prompts_lib.suite_scores(suite, per, support))


def _flat(scores: Mapping[str, float]) -> dict[str, float]:
    return {k.replace("/", "_"): v for k, v in scores.items()}


def parser_ceiling(reference: Dataset, size: int, num: int = 300) -> float:
    """Exact-scene accuracy of the parser on the first `num` real scenes of `reference` brought to
    `size` (bilinear) and read as generated images are: what a perfect model would score at that
    resolution."""
    arrays = reference.arrays
    real = transforms.resize(transforms.to_unit(jnp.asarray(arrays["image"][:num]), reference.num_levels), size)
    return exact_scene(np.asarray(real), {k: v[:num] for k, v in arrays.items()})


def exact_scene(images: np.ndarray, truth: Mapping[str, np.ndarray]) -> float:
    """The fraction of images [N, H, W, 3] in [0, 1] whose parse (jaxgen.eval.scene) is exactly the
    scene of its row of `truth` (the dataset's per-object records)."""
    return float(scene_lib.exact_match(scene_lib.parse_records(images), truth).mean())


def edge_sharpness(images: np.ndarray) -> float:
    """Mean absolute difference between horizontally and vertically neighbouring pixels of images
    [N, H, W, C] in [0, 1] (higher: sharper edges; blur lowers it)."""
    images = np.asarray(images, np.float32)
    return float(0.5 * (np.abs(np.diff(images, axis=1)).mean() + np.abs(np.diff(images, axis=2)).mean()))


def paired_deltas(scores: Mapping[str, float], first: str = "base", second: str = "cascade") -> dict[str, float]:
    """t2i_<second>_minus_<first>_<metric> = t2i_<second>_<metric> - t2i_<first>_<metric> for the
    accuracies (and CLIP score) of two image sets scored from the same prompts and keys; the counts,
    confusions and ceilings describe the images' size and number, not how well a model did."""
    skip = ("num_images", "parser_exact_real", "ceiling_", "counting_confusion_")
    paired = [k.removeprefix(f"t2i_{first}_") for k in scores if k.startswith(f"t2i_{first}_")]
    return {f"t2i_{second}_minus_{first}_{m}": scores[f"t2i_{second}_{m}"] - scores[f"t2i_{first}_{m}"]
            for m in paired if not m.startswith(skip)}

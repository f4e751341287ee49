"""Imagen-style text-to-image on `shapes`, base stage: a 16x16 text-conditional diffusion U-Net on
frozen all-MiniLM-L6-v2 caption embeddings (cross-attention to its tokens + its pooled embedding),
classifier-free guidance and dynamic thresholding.

    jaxgen train text2image_shapes --workdir runs/t2i_base
    jaxgen train text2image_shapes_sr --workdir runs/t2i_sr          # the 16 -> 32 stage
    jaxgen generate --workdir runs/t2i_base --sr_workdir runs/t2i_sr \
        --prompt "two red circles and a blue square" --num 8 --out grid.png --guidance 3
    jaxgen eval --workdir runs/t2i_base    # per-category prompt accuracy (counting, colour, position, ...)

model.text_encoder: 'minilm' (the installed all-MiniLM-L6-v2), 'bert:<checkpoint dir>' (any
BERT-layout safetensors checkpoint) or 'clip:<workdir>' (the text tower of a trained clip run).
model.text_layers: 0 reads the frozen encoder's tokens as they are; n > 0 puts a trainable transformer
of n blocks (width model.text_width) between them and the U-Net's cross-attention (GLIDE trains its
text transformer with the diffusion model; measured here, 2 blocks bound colours and places far worse
after 20,000 steps: see the README's A/B).
data.caption_styles: the caption styles drawn per example (default the full caption; 'position'
teaches places, 'relation' the words "to the left of" and "above"). `"demo"` is the run of `jaxgen demo`, `"quick"` a smoke run of a few steps on
shapes/tiny (tests); `"flow"` (and `"demo_flow"`, `"quick_flow"`) trains the base by flow matching.
"""
import ml_collections

from jaxgen.configs import common


def get_config(arg: str = "") -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.task = "text2image"
    c.seed = 0
    # shapes/t2i: half the scenes grouped (counts up to four on most kinds) and nine (colour, shape,
    # count) triples never rendered in train, so held-out prompts test composition (jaxgen.data.shapes).
    c.data = dict(name="shapes/t2i", split="train", eval_split="test", image_size=16, data_dir=None,
                  caption_styles=("full", "position", "relation"))
    # stage: 'base' or 'sr'; low_res_size, noise_aug_max: the SR stage's input size and the largest
    # noise-augmentation level drawn in training (a fraction of the chain; unused by the base stage);
    # residual_scale (set by the SR stage only, so that base runs saved before the field existed
    # still match this config for resume and warm starts): absent or 0 diffuses the image, > 0
    # diffuses (image - bilinear(low_res)) / residual_scale.
    # A small U-Net (16x16 -> 8x8) with v-prediction and min-SNR weighting: self-attention at 8x8,
    # cross-attention to the text tokens at 16x16 and 8x8 (the 16x16 blocks draw the objects; with
    # text only at 8x8 they saw it through the pooled vector alone), two res blocks per level.
    # text_layers, text_width: the optional trainable text transformer (see the docstring; off).
    c.model = dict(stage="base", text_encoder="minilm", max_text_length=40, text_layers=0, text_width=128,
                   channels=(32, 64), num_res_blocks=2, attention_levels=(1,), cross_attention_levels=(0, 1),
                   num_heads=4,
                   upsample="nearest", dropout=0.0, norm_groups=8, schedule="cosine", timesteps=1000,
                   parameterization="v", loss_weighting="min_snr", min_snr_gamma=5.0,
                   conditioning="text", cond_drop_prob=0.1, low_res_size=16, noise_aug_max=0.0)
    # guidance: the classifier-free guidance scale w (1 = the conditional model); noise_aug: the fixed
    # augmentation level of the SR stage's input at sampling (a fraction of the chain).
    c.sample = dict(method="ddim", steps=50, eta=0.0, guidance=3.0, thresholding="dynamic",
                    percentile=0.995, variance="small", noise_aug=0.0)
    c.optim = dict(name="adamw", lr=1e-3, b1=0.9, b2=0.999, weight_decay=0.0, warmup_steps=500,
                   schedule="cosine", grad_clip=1.0)
    c.train = common.train_section(steps=20000, batch_size=32, log_every=500, ckpt_every=2500, sample_every=2500,
                                   ema_decay=0.999)
    # The prompt suite: prompts_per_category prompts per category (jaxgen.eval.prompts), each
    # generated images_per_prompt times in batches of batch_size; clip_workdir: a trained clip run
    # for the CLIP score; base_workdir (SR stage): the base run that feeds the cascade;
    # sr_examples: real test scenes the SR stage up-samples.
    c.eval = dict(prompts_per_category=16, images_per_prompt=4, prompt_seed=0, batch_size=32,
                  clip_workdir="", base_workdir="", sr_examples=256)
    return common.apply_variant(c, arg, {"demo": demo, "quick": quick}, name="text2image_shapes",
                                modifiers={"flow": use_flow})


def use_flow(c: ml_collections.ConfigDict) -> None:
    """The `_flow` variants: the same base stage trained by flow matching (as SD3 trains its
    text-to-image model): the velocity target on the straight path, logit-normal times (m = 0,
    s = 1), no resolution shift (16x16 is the size the time grid is made for), sampled by Heun in half
    the variant's DDIM steps (2n - 1 network evaluations: 49 against DDIM-50's 50), with
    classifier-free guidance and dynamic thresholding as the DDPM base samples. Flow regresses the velocity with its time density as the
    weighting, so the DDPM settings (v-prediction, min-SNR) go back to their inert defaults."""
    c.model.update(process="flow", flow_time="logit_normal", flow_time_mean=0.0, flow_time_std=1.0,
                   flow_shift=1.0, parameterization="eps", loss_weighting="simple")
    c.sample.update(method="heun", steps=max(1, c.sample.steps // 2), thresholding="dynamic")


def demo(c: ml_collections.ConfigDict) -> None:
    """`jaxgen demo`'s text-to-image run (text2image_shapes_sr's "demo" starts from it too).

    The same U-Net for 1,200 steps (about three minutes on 2 cores), full captions only. At 1,500
    steps v-prediction already drew clean backgrounds and objects in the prompt's colours, where
    eps-prediction still left speckle. EMA 0.99: a 0.999 average would span most of the run, early
    weights included.
    """
    c.data.update(name="shapes", caption_styles=("full",))
    c.model.update(max_text_length=32, num_res_blocks=1, cross_attention_levels=(1,))
    c.sample.update(steps=25)
    c.optim.update(warmup_steps=100)
    c.train.update(steps=1200, log_every=100, ckpt_every=1200, sample_every=0, ema_decay=0.99)
    c.eval.update(prompts_per_category=8, sr_examples=64)


def quick(c: ml_collections.ConfigDict) -> None:
    """A smoke run of a few steps on shapes/t2i_tiny (tests); text2image_shapes_sr's "quick" starts from it too."""
    c.data.name = "shapes/t2i_tiny"
    c.model.update(channels=(16, 32), num_res_blocks=1, attention_levels=(1,), cross_attention_levels=(0, 1),
                   norm_groups=8, timesteps=100, max_text_length=20)
    c.sample.update(steps=5)
    c.train.update(steps=4, log_every=2, ckpt_every=4, sample_every=0, batch_size=16)
    c.optim.warmup_steps = 2
    c.eval.update(prompts_per_category=2, images_per_prompt=2, batch_size=16, sr_examples=16)

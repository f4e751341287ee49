"""The PyTorch side of benchmarks/sampling.py: diffusers' UNet2DModel (class-conditional through
`num_class_embeds`) sampled by DDIMScheduler / DDPMScheduler in a Python loop, which is how
diffusers' own pipelines run the chain. Random weights (the benchmark times speed only).

The U-Net is configured from the same description as jaxgen's Denoiser (see `diffusers_kwargs`):
same channels per level, attention at the same levels with the same head count, the same norm
groups, nearest + conv up-sampling; `mid_block_type=None` and `layers_per_block` chosen so that the
parameter counts match within 5% (diffusers' decoder has one block more per level than its encoder
and a decoder level at the bottleneck, jaxgen's has neither; see sampling.MODELS).
"""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def available() -> bool:
    try:
        import diffusers  # noqa: F401
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def diffusers_kwargs(cfg: dict) -> dict[str, Any]:
    """UNet2DModel arguments for a model description of benchmarks/sampling.py."""
    levels = range(len(cfg["channels"]))
    att = set(cfg["attention_levels"])
    return {
        "sample_size": cfg["size"], "in_channels": cfg["in_channels"], "out_channels": cfg["in_channels"],
        "block_out_channels": tuple(cfg["channels"]), "layers_per_block": cfg["torch_layers_per_block"],
        "down_block_types": tuple("AttnDownBlock2D" if i in att else "DownBlock2D" for i in levels),
        "up_block_types": tuple("AttnUpBlock2D" if i in att else "UpBlock2D" for i in reversed(levels)),
        "mid_block_type": cfg.get("torch_mid_block"),
        "attention_head_dim": cfg["channels"][max(att)] // cfg["num_heads"] if att else 8,
        "norm_num_groups": cfg["norm_groups"], "num_class_embeds": cfg["num_classes"] + 1}


def build(cfg: dict, channels_last: bool = True):
    """UNet2DModel in eval mode (random weights, seeded), channels-last unless told otherwise."""
    import torch
    from diffusers import UNet2DModel

    torch.manual_seed(0)
    model = UNet2DModel(**diffusers_kwargs(cfg)).eval()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model


def num_params(model) -> int:
    return int(sum(p.numel() for p in model.parameters()))


def forward_gflops(model, cfg: dict) -> float:
    """GFLOP of one batch-1 forward pass as torch's FlopCounterMode counts them (convs, matmuls)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.zeros(1, cfg["in_channels"], cfg["size"], cfg["size"])
    counter = FlopCounterMode(display=False)
    with counter, torch.inference_mode():
        model(x, torch.zeros(1, dtype=torch.long), class_labels=torch.zeros(1, dtype=torch.long))
    return counter.get_total_flops() / 1e9


def make_scheduler(method: str):
    """The scheduler with the schedule jaxgen's benchmark uses (cosine = 'squaredcos_cap_v2'),
    epsilon prediction, no clipping or thresholding (jaxgen: thresholding='none')."""
    from diffusers import DDIMScheduler, DDPMScheduler

    kw = {"num_train_timesteps": 1000, "beta_schedule": "squaredcos_cap_v2", "clip_sample": False,
              "prediction_type": "epsilon"}
    return DDIMScheduler(**kw) if method == "ddim" else DDPMScheduler(**kw)


def sampler(model, cfg: dict, method: str, steps: int, batch: int, guidance: float | None,
            channels_last: bool = True, seed: int = 0) -> Callable[[], Any]:
    """A zero-argument callable that draws `batch` images with `steps` steps of `method`
    (the scheduler's own spacing of a 1000-step chain), with classifier-free guidance w when
    `guidance` is not None: the conditional and null-label halves in one batched forward pass."""
    import torch

    sched = make_scheduler(method)
    c, s = cfg["in_channels"], cfg["size"]
    labels = torch.arange(batch) % cfg["num_classes"]
    if guidance is not None:  # [cond; null], the null class is num_classes
        labels = torch.cat([labels, torch.full((batch,), cfg["num_classes"])])
    fmt = torch.channels_last if channels_last else torch.contiguous_format

    def run():
        g = torch.Generator().manual_seed(seed)
        x = torch.randn(batch, c, s, s, generator=g).contiguous(memory_format=fmt)
        sched.set_timesteps(steps)
        with torch.inference_mode():
            for t in sched.timesteps:
                inp = torch.cat([x, x]) if guidance is not None else x
                out = model(inp, t, class_labels=labels).sample
                if guidance is not None:
                    out_c, out_u = out.chunk(2)
                    out = out_u + guidance * (out_c - out_u)
                if method == "ddim":
                    x = sched.step(out, t, x, eta=0.0, generator=g).prev_sample
                else:
                    x = sched.step(out, t, x, generator=g).prev_sample
        return x

    return run


def first_call_s(run: Callable[[], Any]) -> float:
    """Seconds of the first call (oneDNN primitive creation included): torch's 'compile' time."""
    t0 = time.perf_counter()
    run()
    return time.perf_counter() - t0

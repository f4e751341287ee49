"""Kernel benchmark: jaxgen's convolution, transposed convolution (every form), up-sampling + conv
and U-Net, each beside the same work in PyTorch, in one run.

    python -m benchmarks.kernels                   # full table (a few minutes on 2 cores)
    python -m benchmarks.kernels --quick --out /tmp/k   # smoke run (< 30 s) that the tests execute:
                                                        # tiny shapes, 1 thread, XLA opt level 0
    python -m benchmarks.kernels --xla-flags=""  # XLA's default options (YNNPACK on)

Writes kernels.json, kernels.md and kernels.png into --out (default benchmarks/results/). Shapes are
those of jaxgen's own models: U-Net levels at 8-64 px with 32-256 channels and batch 16-128. FLOPs
of a row are those of the direct operation (2 * MACs of the convolution it computes), the same for
every implementation in a group, so GFLOP/s compares time; 'vs torch' = torch time / this time.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path

from benchmarks import common
from benchmarks.common import Row, median, prepare_jax, prepare_torch, time_interleaved

# Shapes (B, H_in, C_in, C_out). Full: U-Net levels; quick: tiny, for the smoke test.
FULL = dict(
    conv=[(128, 8, 256, 256, 1), (64, 16, 128, 128, 1), (32, 32, 64, 64, 1), (16, 64, 32, 32, 1),
          (32, 32, 64, 128, 2)],
    transpose_s2=[(128, 8, 256, 128, 4), (64, 16, 128, 64, 4), (16, 32, 64, 32, 4),
                  (64, 16, 128, 64, 3)],
    transpose_s1=[(64, 16, 128, 128, 3), (16, 64, 32, 32, 3)],
    upsample=[(64, 8, 256, 128), (32, 16, 128, 64), (16, 32, 64, 32)],
    unet=dict(batch=32, size=32, channels=(64, 128, 256), num_res_blocks=2, attention_levels=(2,)),
    rounds=15, min_round_s=0.05, max_group_s=60.0)
QUICK = dict(
    conv=[(4, 8, 16, 16, 1)], transpose_s2=[(4, 8, 16, 8, 4)], transpose_s1=[(4, 8, 8, 8, 3)],
    upsample=[(4, 8, 16, 8)],
    unet=dict(batch=2, size=8, channels=(8, 16), num_res_blocks=1, attention_levels=(1,)),
    rounds=3, min_round_s=0.0, max_group_s=0.5)
MATRIX_MAX_BYTES = 64 << 20  # the explicit-matrix form only where A fits in this


def _shape(b, h, ci, co, k=3, s=1) -> str:
    return f"B{b} {h}x{h} {ci}->{co} k{k} s{s}"


class Bench:
    """Collects rows; each group's candidates are timed interleaved (see common.py)."""

    def __init__(self, rounds: int, min_round_s: float, max_group_s: float, use_torch: bool):
        self.rows: list[Row] = []
        self.rounds, self.min_round_s, self.use_torch = rounds, min_round_s, use_torch
        self.max_group_s = max_group_s

    def group(self, group: str, shape: str, flops: float, jax_cands: dict, torch_cand=None,
              extra: dict | None = None) -> None:
        cands = {name: c for name, c in jax_cands.items()}
        if torch_cand is not None and self.use_torch:
            cands["torch"] = torch_cand()
        times = time_interleaved(cands, self.rounds, self.min_round_s, self.max_group_s)
        for name, c in cands.items():
            fw = "torch" if name == "torch" else "jax"
            self.rows.append(Row(group, shape, name, fw, median(times[name]) * 1e3, flops,
                                 c.compile_s, extra=dict(extra or {})))
        print(f"  {group:28s} {shape:28s} " + "  ".join(
            f"{n}={median(t) * 1e3:.2f}ms" for n, t in times.items()), flush=True)


def _nchw(x):  # NHWC numpy/JAX array -> torch NCHW tensor in channels_last memory (== NHWC)
    import numpy as np
    import torch
    return torch.from_numpy(np.array(x)).permute(0, 3, 1, 2).contiguous(
        memory_format=torch.channels_last)


def _torch_w(w, transpose: bool = False):
    """HWIO kernel -> torch weight [O, I, kh, kw] (for conv_transpose2d: ours [kh,kw,Cx,Cy] ->
    [Cy, Cx, kh, kw], which is what it expects), channels-last."""
    import numpy as np
    import torch
    return torch.from_numpy(np.array(w).transpose(3, 2, 0, 1)).contiguous(
        memory_format=torch.channels_last)


# ----------------------------------------------------------------------------------------------
# Kernel groups
# ----------------------------------------------------------------------------------------------


def bench_conv(bench: Bench, shapes, rng) -> None:
    import jax.numpy as jnp
    from jaxgen.nn import conv as C
    for b, h, ci, co, s in shapes:
        x = jnp.asarray(rng.standard_normal((b, h, h, ci), dtype="float32"))
        w = jnp.asarray(rng.standard_normal((3, 3, ci, co), dtype="float32") / math.sqrt(9 * ci))
        ho = -(-h // s)
        flops = 2.0 * b * ho * ho * 9 * ci * co

        def torch_cand(x=x, w=w, s=s):
            import torch.nn.functional as F
            if s == 1:
                return prepare_torch(lambda a, k: F.conv2d(a, k, padding=1), _nchw(x), _torch_w(w))
            # XLA's SAME at stride 2 on an even size pads (0, 1); torch pads symmetrically.
            return prepare_torch(lambda a, k: F.conv2d(F.pad(a, (0, 1, 0, 1)), k, stride=2),
                                 _nchw(x), _torch_w(w))

        bench.group("conv 3x3", _shape(b, h, ci, co, 3, s), flops,
                    {"jaxgen conv2d": prepare_jax(lambda x, w, s=s: C.conv2d(x, w, s), x, w)},
                    torch_cand)


def bench_transpose(bench: Bench, shapes, stride: int, rng) -> None:
    import jax.numpy as jnp
    from flax import linen as nn
    from jaxgen.nn import conv as C
    for b, h, ci, co, k in shapes:
        y = jnp.asarray(rng.standard_normal((b, h, h, ci), dtype="float32"))
        w = rng.standard_normal((k, k, co, ci), dtype="float32") / math.sqrt(k * k * ci)
        w = jnp.asarray(w)
        flops = 2.0 * b * h * h * k * k * ci * co  # MACs of A^T y == those of the forward conv
        # Padding that torch can express: 'SAME' when it is symmetric (k=4,s=2 and odd k at s=1),
        # else p = (k-1)//2 with output_padding (k=3, s=2: torch padding=1, output_padding=1).
        same = (k - stride) % 2 == 0
        pad, p, op = ("SAME", (k - stride) // 2, 0) if same else (1, 1, 1)
        size = C.transpose_output_size((h, h), k, stride, pad, output_padding=op)
        cands = {}
        for method in ("subpixel", "vjp"):
            cands[f"jaxgen {method}"] = prepare_jax(
                lambda y, w, m=method: C.conv_transpose(y, w, stride, pad, 1, size, m), y, w)
        a_bytes = 4 * (h * h * ci) * (size[0] * size[1] * co)
        if a_bytes <= MATRIX_MAX_BYTES:
            cands["jaxgen matrix"] = prepare_jax(
                lambda y, w: C.conv_transpose_matrix(y, w, stride, pad, 1, size), y, w)
        # What a JAX user writes by hand: lax.conv_transpose with explicit padding that reproduces
        # the same output (jaxgen's conv_transpose_lax computes exactly it), and flax's layer.
        cands["lax.conv_transpose"] = prepare_jax(
            lambda y, w: C.conv_transpose_lax(y, w, stride, pad, 1, size), y, w)
        fl = nn.ConvTranspose(co, (k, k), (stride, stride), "SAME" if same else ((1, 2), (1, 2)),
                              use_bias=False, transpose_kernel=True)
        cands["flax ConvTranspose"] = prepare_jax(
            lambda y, w: fl.apply({"params": {"kernel": w}}, y), y, w)

        def torch_cand(y=y, w=w, p=p, op=op):
            import torch.nn.functional as F
            return prepare_torch(lambda a, k_: F.conv_transpose2d(
                a, k_, stride=stride, padding=p, output_padding=op), _nchw(y), _torch_w(w))

        bench.group(f"conv_transpose s{stride}", _shape(b, h, ci, co, k, stride), flops, cands,
                    torch_cand)


def bench_upsample_conv(bench: Bench, shapes, rng) -> None:
    import jax.numpy as jnp
    from jaxgen.nn import conv as C
    for b, h, ci, co in shapes:
        x = jnp.asarray(rng.standard_normal((b, h, h, ci), dtype="float32"))
        w = jnp.asarray(rng.standard_normal((3, 3, ci, co), dtype="float32") / math.sqrt(9 * ci))
        flops = 2.0 * b * (2 * h) ** 2 * 9 * ci * co  # the 3x3 conv at the up-sampled size
        for method in ("nearest", "bilinear"):
            cands = {"jaxgen upsample+conv": prepare_jax(
                lambda x, w, m=method: C.conv2d(C.upsample(x, 2, m), w), x, w)}
            if method == "nearest":
                cands["jaxgen fused (sub-pixel)"] = prepare_jax(
                    lambda x, w: C.upsample_conv_nearest(x, w, 2), x, w)
            cands["jax.image.resize+conv"] = prepare_jax(
                lambda x, w, m=method: C.conv2d(
                    __import__("jax").image.resize(x, (b, 2 * h, 2 * h, ci), m), w), x, w)

            def torch_cand(x=x, w=w, m=method):
                import torch.nn.functional as F
                kw = {} if m == "nearest" else {"align_corners": False}
                return prepare_torch(lambda a, k_: F.conv2d(
                    F.interpolate(a, scale_factor=2, mode=m, **kw), k_, padding=1),
                    _nchw(x), _torch_w(w))

            bench.group(f"upsample {method} + conv", _shape(b, h, ci, co, 3, 1), flops, cands,
                        torch_cand)


# ----------------------------------------------------------------------------------------------
# U-Net: jaxgen's UNet and the same network in PyTorch, loaded with the same weights
# ----------------------------------------------------------------------------------------------


def torch_unet(params: dict, cfg: dict):
    """The forward pass of jaxgen.nn.UNet (time embedding, self-attention, 'transpose' up-sampling)
    written with torch.nn.functional over the *same* weights. Returns (forward(x, t), tensors)."""
    import numpy as np
    import torch
    import torch.nn.functional as F

    def conv_w(k):  # HWIO -> OIHW
        return np.array(k).transpose(3, 2, 0, 1)

    tensors: dict[str, torch.Tensor] = {}

    def walk(tree, prefix=""):
        for name, v in tree.items():
            key = f"{prefix}/{name}" if prefix else name
            if isinstance(v, dict):
                walk(v, key)
            else:
                a = np.array(v)
                if name == "kernel" and a.ndim == 4:
                    a = conv_w(a)  # conv and conv-transpose weights alike: [3,2,0,1]
                elif name == "kernel":
                    a = a.T  # Dense [in, out] -> Linear [out, in]
                t = torch.from_numpy(np.ascontiguousarray(a))
                if t.ndim == 4:
                    t = t.contiguous(memory_format=torch.channels_last)
                tensors[key] = t.requires_grad_(True)
    walk(params["params"])
    P = tensors
    groups = lambda c: math.gcd(c, cfg.get("norm_groups", 32))  # noqa: E731
    heads = cfg.get("num_heads", 4)

    def conv(name, h, stride=1):
        if stride == 2:  # XLA SAME pads (0, 1) at stride 2 on even sizes
            return F.conv2d(F.pad(h, (0, 1, 0, 1)), P[f"{name}/kernel"], P[f"{name}/bias"], 2)
        k = P[f"{name}/kernel"].shape[-1]
        return F.conv2d(h, P[f"{name}/kernel"], P[f"{name}/bias"], padding=k // 2)

    def gn(name, h):
        return F.group_norm(h, groups(h.shape[1]), P[f"{name}/scale"], P[f"{name}/bias"], 1e-6)

    def dense(name, h):
        return F.linear(h, P[f"{name}/kernel"], P[f"{name}/bias"])

    def res(name, h, emb):
        r = conv(f"{name}/Conv_0", F.silu(gn(f"{name}/GroupNorm_0", h)))
        r = r + dense(f"{name}/Dense_0", F.silu(emb))[:, :, None, None]
        r = conv(f"{name}/Conv_1", F.silu(gn(f"{name}/GroupNorm_1", r)))
        skip = conv(f"{name}/Conv_2", h) if f"{name}/Conv_2/kernel" in P else h
        return skip + r

    def attn(name, h):
        b, c, hh, ww = h.shape
        tok = gn(f"{name}/GroupNorm_0", h).flatten(2).transpose(1, 2)  # [B, HW, C]
        m = f"{name}/MultiHeadAttention_0"
        q, k, v = (dense(f"{m}/{n}", tok).view(b, hh * ww, heads, -1).transpose(1, 2)
                   for n in ("query", "key", "value"))
        o = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, hh * ww, -1)
        return h + dense(f"{m}/out", o).transpose(1, 2).reshape(b, c, hh, ww)

    chans, nres, att = cfg["channels"], cfg["num_res_blocks"], cfg["attention_levels"]

    def forward(x, t):
        half = chans[0] // 2
        freqs = torch.exp(-math.log(10_000.0) * torch.arange(half, dtype=torch.float32) / half)
        e = t[:, None] * freqs[None]
        emb = torch.cat([torch.sin(e), torch.cos(e)], dim=-1)
        emb = dense("time_mlp_1", F.silu(dense("time_mlp_0", emb)))
        h, skips = conv("stem", x), []
        for i in range(len(chans)):
            for j in range(nres):
                h = res(f"enc{i}_res{j}", h, emb)
                h = attn(f"enc{i}_{j}_attn", h) if i in att else h
            if i < len(chans) - 1:
                skips.append(h)
                h = conv(f"down{i}", h, 2)
        for i in reversed(range(len(chans) - 1)):
            h = F.conv_transpose2d(h, P[f"up{i}/kernel"], P[f"up{i}/bias"], 2, 1)
            h = torch.cat([h, skips[i]], dim=1)
            for j in range(nres):
                h = res(f"dec{i}_res{j}", h, emb)
                h = attn(f"dec{i}_{j}_attn", h) if i in att else h
        return conv("out_conv", F.silu(gn("out_norm", h)))

    return forward, tensors


def bench_unet(bench: Bench, cfg: dict, rng) -> dict:
    import jax
    import jax.numpy as jnp
    import numpy as np
    from jaxgen.nn import UNet
    b, size = cfg["batch"], cfg["size"]
    kw = {k: v for k, v in cfg.items() if k not in ("batch", "size")}
    model = UNet(out_channels=3, upsample="transpose", **kw)
    x = jnp.asarray(rng.standard_normal((b, size, size, 3), dtype="float32"))
    t = jnp.asarray(rng.integers(0, 1000, b).astype("float32"))
    # Parameters drawn in numpy with the shapes init would give: no init compile to wait for.
    shapes = jax.eval_shape(model.init, jax.random.key(0), x, t)
    params = jax.tree_util.tree_map_with_path(lambda path, s: jnp.asarray(
        np.ones(s.shape) if "scale" in jax.tree_util.keystr(path) else
        np.zeros(s.shape) if "bias" in jax.tree_util.keystr(path) else
        rng.standard_normal(s.shape) / math.sqrt(math.prod(s.shape[:-1])), jnp.float32), shapes)

    def fwd(p, x, t):
        return model.apply(p, x, t)

    def loss(p, x, t):
        return jnp.mean((model.apply(p, x, t) - x) ** 2)

    grad = jax.grad(loss)
    jax_fwd, jax_grad = prepare_jax(fwd, params, x, t), prepare_jax(grad, params, x, t)
    flops = {"fwd": common.xla_flops(jax_fwd), "fwd+bwd": common.xla_flops(jax_grad)}
    shape = f"B{b} {size}x{size} ch{tuple(kw['channels'])} res{kw['num_res_blocks']}"
    info = {}
    t_fwd = t_loss = None
    if bench.use_torch:
        import torch
        forward, tensors = torch_unet(params, kw)
        tx, tt = _nchw(x), torch.from_numpy(np.array(t))
        with torch.no_grad():  # same weights, same function: check it before timing it
            diff = np.abs(forward(tx, tt).permute(0, 2, 3, 1).numpy() - np.array(fwd(params, x, t)))
        info["torch_vs_jax_max_abs_diff"] = float(diff.max())

        def t_fwd():
            return prepare_torch(forward, tx, tt)

        def t_loss():
            def step(a, s):
                for v in tensors.values():
                    v.grad = None
                out = forward(a, s)
                ((out - a) ** 2).mean().backward()
            return prepare_torch(step, tx, tt, grad=True)

    bench.group("unet forward", shape, flops["fwd"], {"jaxgen UNet": jax_fwd}, t_fwd, info)
    bench.group("unet forward+backward", shape, flops["fwd+bwd"], {"jaxgen UNet": jax_grad},
                t_loss, info)
    return info


# ----------------------------------------------------------------------------------------------
# Summary and main
# ----------------------------------------------------------------------------------------------


def summarize(rows: list[Row]) -> dict:
    """Geometric-mean speed ratios behind the issue's goals (>1: the first is faster)."""
    def ms(group, impl):
        return {r.shape: r.median_ms for r in rows if r.group == group and r.impl == impl}

    def gmean_ratio(slow: dict, fast: dict):
        keys = [k for k in fast if k in slow]
        if not keys:
            return None
        return math.exp(sum(math.log(slow[k] / fast[k]) for k in keys) / len(keys))

    sub2 = ms("conv_transpose s2", "jaxgen subpixel")
    out = {
        "subpixel_vs_lax_s2": gmean_ratio(ms("conv_transpose s2", "lax.conv_transpose"), sub2),
        "subpixel_vs_torch_s2": gmean_ratio(ms("conv_transpose s2", "torch"), sub2),
        "subpixel_vs_flax_s2": gmean_ratio(ms("conv_transpose s2", "flax ConvTranspose"), sub2),
        "conv_vs_torch": gmean_ratio(ms("conv 3x3", "torch"), ms("conv 3x3", "jaxgen conv2d")),
        "unet_fwd_vs_torch": gmean_ratio(ms("unet forward", "torch"),
                                         ms("unet forward", "jaxgen UNet")),
        "unet_fwd_bwd_vs_torch": gmean_ratio(ms("unet forward+backward", "torch"),
                                             ms("unet forward+backward", "jaxgen UNet")),
    }
    conv_t, conv_j = ms("conv 3x3", "torch"), ms("conv 3x3", "jaxgen conv2d")
    close = sum(conv_t[k] / conv_j[k] >= 0.9 for k in conv_j if k in conv_t)
    out["conv_rows_within_10pct_of_torch_or_faster"] = f"{close}/{len(conv_t)}"
    # The goal against PyTorch at stride 2 in units of the machine: the transposed conv's multiply-
    # adds are the same in both, so 1.2x PyTorch's speed needs 1.2x its share of the ceiling.
    torch_pct = [r.pct_ceiling for r in rows if r.group == "conv_transpose s2" and r.impl == "torch"]
    if torch_pct:
        out["torch_pct_ceiling_s2"] = f"{min(torch_pct):.0f}-{max(torch_pct):.0f} %"
        out["pct_ceiling_needed_for_1.2x_torch_s2"] = f"{1.2 * min(torch_pct):.0f}-{1.2 * max(torch_pct):.0f} %"
    return out


def _backend_started() -> bool:
    """True once JAX has created a backend: XLA_FLAGS and the affinity mask no longer apply."""
    from jax._src import xla_bridge
    return bool(getattr(xla_bridge, "_backends", None))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="tiny shapes, few rounds (smoke test)")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results"), help="output folder")
    ap.add_argument("--rounds", type=int, default=None, help="timed rounds per group")
    ap.add_argument("--no-torch", action="store_true", help="JAX rows only")
    ap.add_argument("--only", default="", help="comma list of groups: conv,transpose,upsample,unet")
    ap.add_argument("--xla-flags", default=None,
                    help="XLA_FLAGS added for this run (default: jaxgen.nn.RECOMMENDED_CPU_XLA_"
                         "FLAGS, which turns YNNPACK off; --xla-flags='' keeps XLA's defaults)")
    ap.add_argument("--threads", type=int, default=None,
                    help="cores for both frameworks (default: all; --quick: 1)")
    args = ap.parse_args(argv)
    if "jax" in sys.modules and _backend_started():
        print("XLA flags and the thread count must be set before JAX starts its backend; run "
              "`python -m benchmarks.kernels` in a fresh process.", file=sys.stderr)
        return 2
    if args.xla_flags is None:  # jaxgen's recommendation; importing jaxgen.nn.conv starts no JAX
        from jaxgen.nn.conv import RECOMMENDED_CPU_XLA_FLAGS as flags
    else:
        flags = args.xla_flags
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {flags}".strip()
    threads = args.threads or (1 if args.quick else common.num_threads())
    # Both frameworks get the same cores: XLA sizes its thread pool from the affinity mask, torch
    # from set_num_threads. One thread in --quick: torch's OpenMP regions stall for a scheduler
    # slice whenever another process holds one of the cores, which would make the smoke run slow.
    if threads < common.num_threads():
        os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[:threads])
    import numpy as np

    cfg = QUICK if args.quick else FULL
    if args.quick:  # a smoke run checks the pipeline, not speed: compile fast
        common.COMPILER_OPTIONS["xla_backend_optimization_level"] = 0
    use_torch = not args.no_torch and common.setup_torch(threads)
    bench = Bench(args.rounds or cfg["rounds"], cfg["min_round_s"], cfg["max_group_s"], use_torch)
    only = set(filter(None, args.only.split(","))) or {"conv", "transpose", "upsample", "unet"}
    rng = np.random.default_rng(0)
    t_start = time.perf_counter()
    env = common.environment()
    ceiling = common.measure_ceiling(512 if args.quick else 2048, 3 if args.quick else 7)
    print(f"ceiling {ceiling['ceiling_gflops']:.0f} GFLOP/s (matmul {ceiling['matmul_n']}); "
          f"torch {'on' if use_torch else 'off'}; {env['threads']} threads", flush=True)
    sections = {"conv": lambda: bench_conv(bench, cfg["conv"], rng),
                "transpose": lambda: (bench_transpose(bench, cfg["transpose_s2"], 2, rng),
                                      bench_transpose(bench, cfg["transpose_s1"], 1, rng)),
                "upsample": lambda: bench_upsample_conv(bench, cfg["upsample"], rng),
                "unet": lambda: bench_unet(bench, cfg["unet"], rng)}
    for name, run in sections.items():
        if name in only:
            t0 = time.perf_counter()
            run()
            env[f"section_s_{name}"] = round(time.perf_counter() - t0, 1)
    ceiling = common.best_ceiling(ceiling, common.measure_ceiling(ceiling["matmul_n"], 3 if args.quick else 7))
    common.finish_rows(bench.rows, ceiling["ceiling_gflops"])
    summary = summarize(bench.rows)
    env["loadavg_at_end"] = os.getloadavg() if hasattr(os, "getloadavg") else None
    env["wall_s"] = time.perf_counter() - t_start

    out = Path(args.out)
    cmd = "python -m benchmarks.kernels " + " ".join(argv if argv is not None else sys.argv[1:])
    common.write_json(out / "kernels.json", {"command": cmd.strip(), "environment": env,
                                             "ceiling": ceiling, "summary": summary,
                                             "rows": bench.rows})
    lines = [f"Command: `{cmd.strip()}`", "",
             f"Machine: {env['cpu']}, {env['threads']} threads; JAX {env['jax']}, PyTorch "
             f"{env['torch']}; XLA_FLAGS='{env['xla_flags']}'; load average at start "
             f"{env['loadavg_at_start'][0]:.1f}, at end {env['loadavg_at_end'][0]:.1f}.",
             f"Ceiling (fp32 matmul {ceiling['matmul_n']}^3, the faster framework's, best of the start "
             "and the end of the run): "
             f"{ceiling['ceiling_gflops']:.0f} GFLOP/s (JAX {ceiling['jax_gflops']:.0f}"
             + (f", PyTorch {ceiling['torch_gflops']:.0f}" if "torch_gflops" in ceiling else "") + ").",
             "", "Summary (geometric-mean speed-ups; >1 means the jaxgen row is faster):", ""]
    lines += [f"- {k}: {v:.2f}x" if isinstance(v, float) else f"- {k}: {v}"
              for k, v in summary.items()]
    common.write_markdown(out / "kernels.md", "jaxgen kernel benchmark (CPU)", "\n".join(lines),
                          bench.rows)
    common.bar_chart(out / "kernels.png", bench.rows, f"jaxgen kernels vs PyTorch, {env['cpu']}")
    print(f"wrote {out}/kernels.json, kernels.md, kernels.png in {env['wall_s']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

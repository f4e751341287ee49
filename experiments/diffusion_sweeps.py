"""Guidance, DDIM-steps and solver sweeps of a trained diffusion run on digits.

    python -m experiments.diffusion_sweeps --workdir runs/diffusion_digits_class \
        --classifier runs/classifier_digits [--num 500] [--out experiments/results] [--solvers] \
        [--flow_workdir runs/diffusion_digits_class_8x8_flow]

Guidance sweep (Ho & Salimans 2022, fig. 4): for w in 0, 0.5, 1, 2, 4, 8 with the config's sampler
(method, steps) and dynamic thresholding, the Frechet distance of `num` samples to the real train
split in the digits classifier's feature space (of all samples, and the mean over chunks of 360, the
test split's size, which compares with the real reference and across sample counts), the fraction classified
as the requested digit, the class-histogram KL to uniform, and the saturation of the images; at the
high scales also with static clipping and with no thresholding, to show what dynamic thresholding
fixes (Saharia et al. 2022, sec. 2.3); and the ancestral sampler (DDPM respaced to 100 steps) at
w = 0, 1 and 2. Steps sweep: DDIM with 10, 20, 50, 100 and 1000 steps at the config's guidance scale,
quality against sampling time. Solver sweep (--solvers; also for an unconditional run): DDIM,
DPM-Solver++(2M) on the t-uniform and on the Karras grid, and EDM's Heun at about 5, 10, 20 and 50
network evaluations (Heun: N Karras sigmas cost 2 N - 1), at the config's guidance and thresholding:
does a second-order solver at 10 evaluations reach DDIM's quality at 50? (--solvers_seeds K samples
each setting from K keys and adds the mean and standard deviation of the distance to test.)
With --flow_workdir (a model.process='flow' run, e.g.
diffusion_digits_class:8x8_flow: the same network and budget trained by flow matching), the solver
table also holds that model's Euler and Heun rows at the same evaluation counts (Heun: N steps cost
2 N - 1), at its own config's guidance and thresholding: does the flow model match the DDPM-trained
one at 20 evaluations? A flow run given as --workdir gets its Euler/Heun rows in the solver sweep,
its config's method in the steps sweep, and no ancestral rows in the guidance sweep.

Every table leads with the Frechet distance to the held-out test split (the reference: real train vs
test), then the distance to train. Writes diffusion_guidance.{json,md,png}, diffusion_steps.{json,md}
and diffusion_solvers.{json,md} into --out (--skip_steps, --skip_guidance leave a sweep out).
"""
from __future__ import annotations

import argparse
import os

import numpy as np

from experiments.results_files import write_pair
from jaxgen.tasks.runs import classifier_judge, restore_for_eval
from jaxgen.train import parallel

GUIDANCE = (0.0, 0.5, 1.0, 2.0, 4.0, 8.0)
THRESHOLD_COMPARISON = (4.0, 8.0)  # the scales at which static / none are also run
STEPS = (10, 20, 50, 100, 1000)
ANCESTRAL_STEPS, ANCESTRAL_GUIDANCE = 100, (0.0, 1.0, 2.0)
SOLVER_NFE = (5, 10, 20, 50)
SOLVERS = ("ddim", "dpmpp_2m", "dpmpp_2m_karras", "edm_heun")
FLOW_SOLVERS = ("euler", "heun")
COLUMNS = ("frechet_distance_to_test", "frechet_distance", "frechet_distance_360", "class_accuracy", "class_kl_to_uniform", "saturated_fraction",
           "x0_out_of_range", "sample_seconds", "compile_seconds")
#: the columns a row adds when sampled from several keys (--solvers_seeds)
SEED_COLUMNS = ("frechet_distance_to_test_mean", "frechet_distance_to_test_sd", "seeds")


def run_setting(task, params, judge, num: int, seeds: int = 1, **overrides) -> dict:
    """One row: task.sample_quality of `num` samples at `overrides` from the task's sampling key. With
    seeds > 1 the setting is also sampled from seeds - 1 other keys, and the row adds the mean and
    standard deviation over all of them of the distance to test (SEED_COLUMNS): the noise that a
    difference between two rows must exceed."""
    result = task.sample_quality(params, judge, num, **overrides)  # times compile and sampling apart
    if seeds > 1:
        dist = [result["frechet_distance_to_test"]] + [
            task.sample_quality(params, judge, num, key_index=k, **overrides)["frechet_distance_to_test"]
            for k in range(1, seeds)]
        result.update(zip(SEED_COLUMNS, (float(np.mean(dist)), float(np.std(dist, ddof=1)), seeds)))
        # per key, in the JSON only: rows that share the sampling keys also share x_T, so two settings
        # compare pairwise, key by key, with less noise than their means do
        result["frechet_distance_to_test_per_seed"] = [float(v) for v in dist]
    result.update(overrides)
    print({k: round(v, 4) if isinstance(v, float) else v for k, v in result.items()}, flush=True)
    return result


def markdown(rows: list[dict], keys: tuple[str, ...], title: str, note: str) -> str:
    head = keys + COLUMNS + tuple(c for c in SEED_COLUMNS if c in rows[0])
    lines = [f"# {title}", "", note, "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        lines.append("| " + " | ".join(f"{r[k]:.4g}" if isinstance(r[k], float) else str(r[k]) for k in head) + " |")
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], reference: float, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(12, 3.4))
    for kind, style in (("dynamic", "o-"), ("static", "s--"), ("none", "x:")):
        sel = [r for r in rows if r["thresholding"] == kind]
        w = [r["guidance"] for r in sel]
        axes[0].plot(w, [r["frechet_distance"] for r in sel], style, label=kind)
        axes[1].plot(w, [r["class_accuracy"] for r in sel], style, label=kind)
        axes[2].plot(w, [r["saturated_fraction"] for r in sel], style, label=kind)
    axes[0].axhline(reference, color="grey", lw=0.8, label="real test vs train")
    axes[2].axhline(rows[0]["saturated_fraction_real"], color="grey", lw=0.8, label="real images")
    titles = ("Frechet distance (lower is better)", "class accuracy", "saturated pixels")
    for ax, name in zip(axes, titles, strict=True):
        ax.set_xlabel("guidance scale w")
        ax.set_title(name, fontsize=10)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--classifier", required=True, help="a trained classifier_digits run")
    parser.add_argument("--num", type=int, default=500, help="samples per setting")
    parser.add_argument("--out", default="experiments/results")
    parser.add_argument("--steps_num", type=int, default=200, help="samples per setting of the steps sweep")
    parser.add_argument("--skip_steps", action="store_true", help="only the guidance sweep")
    parser.add_argument("--skip_guidance", action="store_true", help="leave out the guidance sweep")
    parser.add_argument("--solvers", action="store_true", help="also the solver sweep (NFE 5, 10, 20, 50)")
    parser.add_argument("--solvers_num", type=int, default=360, help="samples per setting of the solver sweep")
    parser.add_argument("--solvers_seeds", type=int, default=1,
                        help="sampling keys per setting of the solver sweep (> 1 adds the mean and standard "
                             "deviation of the distance to test over them)")
    parser.add_argument("--solvers_methods", nargs="+", help="only these methods of the solver sweep (default: "
                                                             "all of SOLVERS, or FLOW_SOLVERS for a flow run)")
    parser.add_argument("--solvers_nfe", type=int, nargs="+", default=list(SOLVER_NFE),
                        help="the numbers of network evaluations of the solver sweep")
    parser.add_argument("--flow_workdir", help="a flow-matching run whose Euler and Heun rows join the solver "
                                               "sweep's table (with --solvers)")
    args = parser.parse_args(argv)
    if args.solvers_seeds < 1:
        raise SystemExit(f"--solvers_seeds must be at least 1, not {args.solvers_seeds}.")
    unknown = sorted(set(args.solvers_methods or ()) - set(SOLVERS + FLOW_SOLVERS))
    if unknown:
        raise SystemExit(f"--solvers_methods: {unknown[0]!r} is not one of {', '.join(SOLVERS + FLOW_SOLVERS)}.")
    if args.flow_workdir and not args.solvers:
        raise SystemExit("--flow_workdir adds rows to the solver sweep; give --solvers with it.")
    parallel.configure_jax()
    config, task, state = restore_for_eval(args.workdir)
    if not task.num_classes and not args.skip_guidance:
        raise SystemExit(f"{args.workdir} is not a class-conditional diffusion run; the guidance sweep needs "
                         f"one (--skip_guidance runs the others).")
    flow_run = None
    if args.flow_workdir:
        flow_run = restore_for_eval(args.flow_workdir)
        if getattr(flow_run[1], "process", None) != "flow":
            raise SystemExit(f"--flow_workdir {args.flow_workdir} is not a flow-matching run (model.process='flow').")
    if args.solvers and args.solvers_methods:
        offered = set(FLOW_SOLVERS if task.process == "flow" else SOLVERS) | (set(FLOW_SOLVERS) if flow_run else set())
        if not offered & set(args.solvers_methods):
            raise SystemExit(f"--solvers_methods {' '.join(args.solvers_methods)} selects no solver of these runs; "
                             f"they sample with {', '.join(sorted(offered))}.")
    params, judge = task.eval_params(state), classifier_judge(args.classifier)
    os.makedirs(args.out, exist_ok=True)
    meta = {"workdir": args.workdir, "step": int(state.step), "sampler": config.sample.to_dict()}
    if flow_run:
        meta["flow_run"] = {"workdir": args.flow_workdir, "step": int(flow_run[2].step),
                            "sampler": flow_run[0].sample.to_dict()}

    def write(stem: str, rows: list[dict], keys: tuple[str, ...], title: str, num: int, what: str,
              flags: str) -> None:
        """{stem}.json (meta + rows) and {stem}.md (the table under a note saying how it was made);
        `what` says what the `num` samples of each row are."""
        r = rows[0]
        note = (f"{num} {what} from {args.workdir} (step {int(state.step)}), judged by {args.classifier}; "
                f"Frechet distance of real train to test (the reference) {r['frechet_floor_test_vs_train']:.1f}; "
                f"saturated pixels "
                f"of real images {r['saturated_fraction_real']:.3f}. Command: python -m experiments.diffusion_sweeps "
                f"--workdir {args.workdir} --classifier {args.classifier} {flags}")
        write_pair(args.out, stem, {"meta": {**meta, "num_samples": num}, "rows": rows},
                   markdown(rows, keys, title, note))

    if not args.skip_guidance:
        method, steps = config.sample.method, int(config.sample.steps)
        rows = guidance_rows(task, params, judge, args.num, method, steps, ancestral=task.process == "ddpm")
        write("diffusion_guidance", rows, ("method", "steps", "guidance", "thresholding"),
              "Classifier-free guidance sweep", args.num, "samples per row", f"--num {args.num}")
        plot([r for r in rows if r["method"] == method], rows[0]["frechet_floor_test_vs_train"],
             os.path.join(args.out, "diffusion_guidance.png"))
    if not args.skip_steps:
        w = float(config.sample.guidance)
        method = "ddim" if task.process == "ddpm" else config.sample.method
        rows = [run_setting(task, params, judge, args.steps_num, guidance=w, method=method, steps=n)
                for n in STEPS if n <= config.model.timesteps]
        name = "DDIM" if method == "ddim" else f"Flow {method.capitalize()}"
        write("diffusion_steps", rows, ("steps",), f"{name} steps sweep: quality against time", args.steps_num,
              f"{name} samples per row at w = {w}",
              f"--steps_num {args.steps_num}" + (" --skip_guidance" if args.skip_guidance else ""))
    if args.solvers:
        runs = [(config, task, params)]
        what = f"samples per row at w = {config.sample.guidance}, {config.sample.thresholding} thresholding"
        flags = (f"--solvers_num {args.solvers_num} --solvers --solvers_nfe {' '.join(map(str, args.solvers_nfe))} "
                 f"--skip_guidance --skip_steps" + (f" --solvers_seeds {args.solvers_seeds}" if args.solvers_seeds > 1 else "")
                 + (f" --solvers_methods {' '.join(args.solvers_methods)}" if args.solvers_methods else ""))
        if flow_run:
            flow_config, flow_task, flow_state = flow_run
            runs.append((flow_config, flow_task, flow_task.eval_params(flow_state)))
            what += (f"; rows euler and heun: the flow-matching model {args.flow_workdir} (step "
                     f"{int(flow_state.step)}) at w = {flow_config.sample.guidance}, "
                     f"{flow_config.sample.thresholding} thresholding")
            flags += f" --flow_workdir {args.flow_workdir}"
        rows = [row for nfe in args.solvers_nfe for c, t, p in runs
                for row in solver_rows(t, p, judge, args.solvers_num, float(c.sample.guidance),
                                       c.sample.thresholding, (nfe,), args.solvers_seeds, args.solvers_methods)]
        write("diffusion_solvers", rows, ("method", "steps", "nfe"), "Few-step solvers: quality against network "
              "evaluations", args.solvers_num, what, flags)


def solver_rows(task, params, judge, num: int, guidance: float, thresholding: str,
                nfes=SOLVER_NFE, seeds: int = 1, methods=None) -> list[dict]:
    """DDIM, DPM-Solver++(2M) on the t-uniform and the Karras grid and EDM Heun (a flow model: Euler
    and Heun), or those of them in `methods`, at about `nfes` network evaluations each (a guided
    evaluation, conditional and null branch in one batch, counts once), as `nfe` says exactly; each
    setting from `seeds` sampling keys (run_setting)."""
    flow = task.process == "flow"
    rows = []
    for nfe in nfes:
        for method in FLOW_SOLVERS if flow else SOLVERS:
            if methods and method not in methods:
                continue
            steps = (nfe + 1) // 2 if method in ("edm_heun", "heun") else nfe
            if not flow and steps > task.schedule.num_steps:
                continue
            row = run_setting(task, params, judge, num, seeds, guidance=guidance, thresholding=thresholding,
                              method=method, steps=steps)
            row["nfe"] = int(row.get("nfe", steps))  # the solvers report theirs; DDIM's is its steps
            rows.append(row)
    return rows


def guidance_rows(task, params, judge, num: int, method: str, steps: int, ancestral: bool = True) -> list[dict]:
    """The guidance rows: the config's sampler with dynamic thresholding at every w, then static and
    no clipping at the high scales, then (`ancestral`: a DDPM-trained model) the ancestral sampler at
    low guidance, where it is best."""
    rows = [run_setting(task, params, judge, num, guidance=w, thresholding="dynamic", method=method, steps=steps)
            for w in GUIDANCE]
    rows += [run_setting(task, params, judge, num, guidance=w, thresholding=kind, method=method, steps=steps)
             for kind in ("static", "none") for w in THRESHOLD_COMPARISON]
    if ancestral:
        rows += [run_setting(task, params, judge, num, guidance=w, thresholding=kind, method="ddpm",
                             steps=ANCESTRAL_STEPS) for kind in ("dynamic", "static") for w in ANCESTRAL_GUIDANCE]
    return rows


if __name__ == "__main__":
    main()

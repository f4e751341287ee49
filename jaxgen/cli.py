"""The `jaxgen` command: train, sample, generate, export, eval, report, demo, embed, zeroshot, fid, configs.

Every expected failure (bad config value, unknown dataset, incompatible or corrupt checkpoint,
non-finite loss) ends with one `jaxgen: error: ...` sentence on stderr and exit status 2, before
anything is written where possible.
"""
import argparse
import os
import sys

from jaxgen import config as config_lib
from jaxgen.errors import UserError

USAGE_EXAMPLES = """examples:
  jaxgen train vae_digits --workdir runs/vae --config.train.steps=2000
  jaxgen sample --workdir runs/vae --num 64 --seed 0 --out samples.png
  jaxgen sample --workdir runs/diff --num 64 --out g4.png --config.sample.guidance=4 --config.sample.steps=20
  jaxgen generate --workdir runs/t2i --sr_workdir runs/t2i_sr --prompt "two red circles and a blue square" --out g.png
  jaxgen generate --workdir runs/t2i --sr_workdir runs/t2i_sr --sr_workdir runs/t2i_sr64 --prompt "a red circle" --out g.png
  jaxgen generate --workdir runs/unclip --prompt "a red circle at the top left" --num 8 --out u.png
  jaxgen generate --pretrained t2i_base_shapes16_52k --sr_pretrained t2i_sr_shapes32 --guidance 2 --prompt "three green squares" --out g.png
  jaxgen export --workdir runs/t2i --out runs/t2i_model
  jaxgen eval --workdir runs/vae
  jaxgen report --workdir runs/vae
  jaxgen embed --workdir runs/clip --text "two red circles and a blue square" --image scene.png
  jaxgen zeroshot --workdir runs/clip_digits --split test --labels zero,one,two,three,four,five,six,seven,eight,nine
  jaxgen fid samples.npz data:shapes:test
  jaxgen demo
"""


class _UsageError(Exception):
    """A command line argparse rejects; main() turns it into one `jaxgen: error:` line and status 2."""


class _Parser(argparse.ArgumentParser):
    """argparse with jaxgen's one-sentence usage errors: the same `jaxgen: error: ...` line and exit
    status 2 every other bad input gets (argparse prints its whole usage block first, and exits from
    inside main()), naming the subcommand's --help for the details."""

    def error(self, message: str):
        command = self.prog.split(" ", 1)[1] + " " if " " in self.prog else ""
        raise _UsageError(f"{message} (see `jaxgen {command}--help`).")


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="jaxgen", description="Generative models in functional JAX/Flax.",
                                epilog=USAGE_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train a config (resumes from the workdir's newest checkpoint)",
                       description="Any config field can be overridden: --config.train.steps=200.")
    t.add_argument("config", help="config name (see `jaxgen configs`) or path to a config .py file")
    t.add_argument("--workdir", required=True)
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    m = t.add_argument_group("multi-process runs (every process runs the same command; see experiments/launch/)")
    m.add_argument("--coordinator", metavar="HOST:PORT", help="process 0's address (env JAXGEN_COORDINATOR)")
    m.add_argument("--num_processes", metavar="N", help="processes in the run (env JAXGEN_NUM_PROCESSES)")
    m.add_argument("--process_id", metavar="I", help="this process, 0..N-1 (env JAXGEN_PROCESS_ID)")
    m.add_argument("--distributed", metavar="{auto,off}",
                   help="auto: let JAX detect the cluster (Cloud TPU VM, SLURM, Open MPI); off: single process")

    s = sub.add_parser("sample", help="sample images from a trained run")
    s.add_argument("--workdir", required=True)
    s.add_argument("--num", type=int, default=64)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--out", required=True, help=".png for a grid, .npz for raw images in [0, 1] and conditions")

    g = sub.add_parser("generate", help="images from a text prompt with a text-to-image run (and an SR stage)")
    base = g.add_mutually_exclusive_group(required=True)
    base.add_argument("--workdir", help="the base stage's run (text2image base stage or unclip)")
    base.add_argument("--pretrained", help="a pretrained base stage: a name that ships with jaxgen "
                                           "(jaxgen/pretrained) or an exported folder")
    # Super-resolution stages, in the order given (both flags append to one list): 16 -> 32 -> 64 is
    # --sr_workdir S32 --sr_workdir S64 (or any mix of runs and pretrained stages).
    g.add_argument("--sr_workdir", dest="sr_stages", action="append", type=lambda v: ("workdir", v),
                   help="a super-resolution stage's run, applied to the previous stage's images (repeatable)")
    g.add_argument("--sr_pretrained", dest="sr_stages", action="append", type=lambda v: ("pretrained", v),
                   help="a pretrained super-resolution stage (name or exported folder; repeatable)")
    g.add_argument("--prompt", required=True, help='e.g. "two red circles and a blue square"')
    g.add_argument("--num", type=int, default=8)
    g.add_argument("--out", required=True, help=".png for a grid, .npz for raw images in [0, 1]")
    g.add_argument("--guidance", type=float, help="classifier-free guidance scale (default: the run's sample.guidance)")
    g.add_argument("--steps", type=int, help="sampling steps (default: the run's sample.steps)")
    g.add_argument("--method", help="sampler of every stage: ddpm, ddim, dpmpp_2m, dpmpp_2m_karras, edm_euler or edm_heun "
                                    "(default: the run's sample.method)")
    g.add_argument("--seed", type=int, default=0)

    x = sub.add_parser("export", help="freeze a trained run's sampling params (EMA) and config into a folder "
                                      "that generate --pretrained reads")
    x.add_argument("--workdir", required=True)
    x.add_argument("--out", required=True, help="the folder to write (replaced whole if it exists)")
    x.add_argument("--note", default="", help="free text stored in meta.json, e.g. the command that trained it")

    e = sub.add_parser("eval", help="evaluate a trained run; writes <workdir>/eval.json")
    e.add_argument("--workdir", required=True)

    r = sub.add_parser("report", help="write <workdir>/report.html")
    r.add_argument("--workdir", required=True)

    d = sub.add_parser("demo", help="train, evaluate and report every family on the embedded data")
    d.add_argument("--workdir", default="runs/demo")
    d.add_argument("--quick", action="store_true", help="a few steps per family (a smoke run)")

    em = sub.add_parser("embed", help="print a CLIP run's embeddings of texts and/or images")
    em.add_argument("--workdir", required=True)
    em.add_argument("--text", action="append", default=[], help="a text to embed (repeatable)")
    em.add_argument("--image", action="append", default=[], help="an image file to embed (repeatable)")
    em.add_argument("--out", help="write the embeddings to this .npz instead of printing them")

    z = sub.add_parser("zeroshot", help="classify images zero-shot with a CLIP run, from label names")
    z.add_argument("--workdir", required=True)
    z.add_argument("--labels", required=True, help='comma-separated class names, e.g. "cat,dog"')
    z.add_argument("--template", action="append", default=[],
                   help='prompt with {} for the label, e.g. "a photo of a {}" (repeatable: ensembled; default "{}")')
    source = z.add_mutually_exclusive_group(required=True)
    source.add_argument("--images", help="a folder of .png / .jpg images")
    source.add_argument("--split", help="a split of the run's dataset, e.g. test (scored when it has labels)")

    f = sub.add_parser("fid", help="FID between two image sets (the standard Inception features; weights "
                                   "converted once: python -m jaxgen.eval.inception convert --from FILE)")
    f.add_argument("a", help="an .npz (its 'images'), a folder of .png / .jpg, or data:<name>:<split>")
    f.add_argument("b", help="the other set, in any of the same forms")
    f.add_argument("--batch_size", type=int, default=50, help="images per network call")
    f.add_argument("--out", help="also write the result to this .json")

    c = sub.add_parser("configs", help="list the configs that ship with jaxgen, or describe one")
    c.add_argument("name", nargs="?", help="a config to describe: its docstring (what it trains, its "
                                           "settings and variants, the commands to run it)")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    overrides = [a for a in argv if a.startswith("--config.")]
    try:
        args = _parser().parse_args([a for a in argv if not a.startswith("--config.")])
    except _UsageError as e:
        return _fail(str(e))
    if overrides and args.command in ("sample", "eval"):
        # A trained run's model is fixed; only how it is sampled and evaluated may change.
        bad = [o for o in overrides if not o.startswith(("--config.sample.", "--config.eval."))]
        if bad:
            return _fail(f"`jaxgen {args.command}` takes only --config.sample.* and --config.eval.* overrides "
                         f"(the model is fixed by the run), not {bad[0].partition('=')[0]}.")
    elif overrides and args.command not in ("train", "export"):  # export checks its own (frozen models only)
        return _fail(f"--config.* overrides only apply to `jaxgen train`, `sample`, `eval` and `export`, "
                     f"not `{args.command}`.")
    if args.command == "configs":
        # Answered without importing JAX (which takes seconds): the names are the modules of
        # jaxgen.configs, and jaxgen.config reads their docstrings from source, unimported.
        try:
            return _describe_configs(args.name)
        except config_lib.ConfigError as e:
            return _fail(str(e))
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    # Imported here, after parsing: `--help`, a bad flag and `configs` answer without loading JAX.
    from jaxgen import commands
    from jaxgen.train import distributed
    from jaxgen.train.parallel import configure_jax

    configure_jax()
    try:
        if args.command == "train":
            joined = distributed.initialize(distributed.resolve(args.coordinator, args.num_processes,
                                                                args.process_id, args.distributed))
            try:
                return commands.train(args.config, overrides, args.workdir, args.quiet)
            finally:
                if joined:
                    distributed.shutdown()
        if args.command == "sample":
            return commands.sample(args.workdir, args.num, args.seed, args.out, overrides)
        if args.command == "generate":
            return commands.generate(args.workdir, args.prompt, args.num, args.out, args.guidance, args.steps,
                                     args.seed, args.sr_stages or (), args.pretrained, args.method)
        if args.command == "export":
            return commands.export(args.workdir, args.out, args.note, overrides)
        if args.command == "eval":
            return commands.evaluate(args.workdir, overrides)
        if args.command == "report":
            return commands.report(args.workdir)
        if args.command == "demo":
            return commands.demo(args.workdir, args.quick)
        if args.command == "embed":
            return commands.embed(args.workdir, args.text, args.image, args.out)
        if args.command == "fid":
            return commands.fid(args.a, args.b, args.batch_size, args.out)
        if args.command == "zeroshot":
            return commands.zeroshot(args.workdir, args.labels, args.template, args.images, args.split)
    except UserError as e:
        return _fail(str(e))
    return 0


def _describe_configs(name: str | None) -> int:
    """`jaxgen configs`: each config's name and the first sentence of its docstring; with a name,
    that config's whole docstring and the variants it takes."""
    if name:
        text = f"{name}\n\n{config_lib.description(name)}"
        variants = config_lib.variants(name)
        if variants:
            text += f"\n\nVariants (`jaxgen train {name}:VARIANT`): {variants}."
    else:
        names = config_lib.available()
        width = max(map(len, names)) + 2
        text = "\n".join(f"{n:<{width}}{config_lib.summary(n)}" for n in names)
    sys.stdout.write(text + "\n")  # one write, so that `jaxgen configs | head` ends quietly
    return 0


def _fail(message: str) -> int:
    print(f"jaxgen: error: {message}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())

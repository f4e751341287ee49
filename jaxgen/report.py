"""The HTML run report: config, loss curves, sample grids over training, evaluation table.

One self-contained file (images inlined as base64 PNG), readable offline and attachable anywhere.
"""
import base64
import glob
import html
import io
import json
import os

from jaxgen.train import log


def _png_data(path_or_bytes) -> str:
    raw = path_or_bytes if isinstance(path_or_bytes, bytes) else open(path_or_bytes, "rb").read()
    return "data:image/png;base64," + base64.b64encode(raw).decode()


def _curves_png(records: list[dict]) -> bytes | None:
    """One small panel per logged metric against the step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [k for k in records[0] if k not in ("step", "time")] if records else []
    if not names:
        return None
    cols = min(3, len(names))
    rows = -(-len(names) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 2.6 * rows), squeeze=False)
    steps = [r["step"] for r in records]
    for ax, name in zip(axes.flat, names):
        ax.plot(steps, [r.get(name, float("nan")) for r in records], lw=1.2)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return buf.getvalue()


def _table(rows: dict) -> str:
    cells = "".join(f"<tr><td>{html.escape(str(k))}</td><td>{_fmt(v)}</td></tr>" for k, v in rows.items())
    return f"<table>{cells}</table>"


def _fmt(v) -> str:
    return f"{v:.5g}" if isinstance(v, float) else html.escape(str(v))


def _figure_caption(png_path: str) -> str:
    """The text saved beside a figure (<name>.txt, e.g. its prompt), else the figure's name."""
    text_path = png_path[:-4] + ".txt"
    if os.path.exists(text_path):
        with open(text_path, encoding="utf-8") as f:
            return f.read()
    return os.path.basename(png_path)[:-4]


def run_section(workdir: str) -> str:
    """The HTML body for one run directory."""
    config_path = os.path.join(workdir, "config.json")
    config = json.load(open(config_path)) if os.path.exists(config_path) else {}
    title = config.get("name", os.path.basename(os.path.normpath(workdir)))
    parts = [f"<h2>{html.escape(title)}</h2>", f"<p class=dir>{html.escape(os.path.abspath(workdir))}</p>"]
    eval_path = os.path.join(workdir, "eval.json")
    if os.path.exists(eval_path):
        parts += ["<h3>Evaluation</h3>", _table(json.load(open(eval_path)))]
    curves = _curves_png(log.read_metrics(workdir))
    if curves:
        parts += ["<h3>Training curves</h3>", f"<img src='{_png_data(curves)}'>"]
    figures = sorted(glob.glob(os.path.join(workdir, "figures", "*.png")))
    if figures:
        cells = "".join(f"<figure><img src='{_png_data(f)}'><figcaption>{html.escape(_figure_caption(f))}"
                        f"</figcaption></figure>" for f in figures)
        parts += ["<h3>Figures</h3>", f"<div class=grids>{cells}</div>"]
    grids = sorted(glob.glob(os.path.join(workdir, "samples", "step_*.png")))
    if grids:
        shown = grids if len(grids) <= 6 else [grids[round(i * (len(grids) - 1) / 5)] for i in range(6)]
        figures = "".join(f"<figure><img src='{_png_data(g)}'><figcaption>step "
                          f"{int(os.path.basename(g)[5:-4])}</figcaption></figure>" for g in shown)
        parts += ["<h3>Samples over training (fixed noise)</h3>", f"<div class=grids>{figures}</div>"]
    if config:
        parts += ["<h3>Config</h3>", f"<pre>{html.escape(json.dumps(config, indent=2, sort_keys=True))}</pre>"]
    return "\n".join(parts)


_STYLE = """body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px}
.grids{display:flex;flex-wrap:wrap;gap:12px}figure{margin:0}figcaption{font-size:12px;text-align:center}
pre{background:#f5f5f5;padding:8px;font-size:11px;max-height:300px;overflow:auto}.dir{color:#777;font-size:12px}"""


def _page(title: str, body: str) -> str:
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{_STYLE}</style></head><body><h1>{html.escape(title)}</h1>\n{body}\n</body></html>")


def _write(path: str, text: str) -> str:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)
    return path


def write_run_report(workdir: str) -> str:
    if not os.path.isdir(workdir):
        from jaxgen.errors import UsageError

        raise UsageError(f"{workdir} does not exist.")
    return _write(os.path.join(workdir, "report.html"), _page("jaxgen run report", run_section(workdir)))


def write_demo_report(workdir: str, runs: list[str], seconds: float) -> str:
    """One page: a summary table of every run's evaluation, then each run's section."""
    summary = []
    for run in runs:
        path = os.path.join(run, "eval.json")
        results = json.load(open(path)) if os.path.exists(path) else {}
        cells = ", ".join(f"{k} = {_fmt(v)}" for k, v in results.items() if k not in ("eval_seconds",))
        summary.append(f"<tr><td>{html.escape(os.path.basename(run))}</td><td>{cells}</td></tr>")
    body = (f"<p>Trained and evaluated on the embedded data in {seconds:.0f} s.</p>"
            f"<table><tr><th>run</th><th>evaluation</th></tr>{''.join(summary)}</table>"
            + "".join(f"<hr>{run_section(r)}" for r in runs))
    os.makedirs(workdir, exist_ok=True)
    return _write(os.path.join(workdir, "report.html"), _page("jaxgen demo", body))

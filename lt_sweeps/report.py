"""``lt-sweep report``: the lottery-ticket charts of many runs, offline as HTML or online as a W&B Report.

Offline, the report is one self-contained HTML file: PNG plots drawn with matplotlib
and embedded as data URIs, a trial table with one row per run, and each run's round
table. It reads the Hydra run folders below a folder: ``rounds.json`` for the rounds,
``.hydra/config.yaml`` for the config, and the W&B run in ``wandb/`` (through
``wandb leet inspect --json``) for the validation curves.

Online, it saves a W&B Report for a sweep or a group, built with the
``wandb-workspaces`` package (``pip install "lt-sweeps[reports]"``).
"""

from __future__ import annotations

import argparse
import base64
import dataclasses
import html
import io
import json
import logging
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from lt_sweeps.config import ConfigError

# lt_sweeps.charts and lt_sweeps.imp are imported where they are used, because they
# import pytorch_lightning, which takes seconds, and every ``lt-sweep`` command imports
# this module to build its parser.

log = logging.getLogger(__name__)

DEFAULT_WIN_TOLERANCE = 0.005

# Config keys shown in the trial table, when a run has them.
TRIAL_CONFIG_KEYS = (
    "seed",
    "pruning.rate",
    "pruning.rounds",
    "optimizer.name",
    "optimizer.lr",
    "model.hidden",
    "data.name",
)


@dataclass
class RunRecord:
    """One finished (or interrupted) experiment read from its Hydra run folder."""

    folder: Path
    label: str
    run_id: str | None
    config: dict[str, Any]
    results: list[Any]
    val_curves: list[list[tuple[int, float]]] = field(default_factory=list)


def round_results(entries: list[dict[str, Any]]) -> list[Any]:
    """Return ``rounds.json`` entries as RoundResult values, ignoring fields this version does not know."""
    from lt_sweeps.imp import RoundResult

    known = {item.name for item in dataclasses.fields(RoundResult)}
    return [RoundResult(**{key: value for key, value in entry.items() if key in known}) for entry in entries]


def read_config(folder: Path) -> dict[str, Any]:
    """Return the run's composed config from ``.hydra/config.yaml``, resolved where possible."""
    path = folder / ".hydra" / "config.yaml"
    if not path.is_file():
        return {}
    config = OmegaConf.load(path)
    try:
        return OmegaConf.to_container(config, resolve=True)
    except OmegaConfBaseException:
        return OmegaConf.to_container(config, resolve=False)


def wandb_run_folder(folder: Path) -> Path | None:
    """Return the newest W&B run folder of a Hydra run folder, or None."""
    candidates = sorted((folder / "wandb").glob("*run-*"), key=lambda path: path.name.split("-", 2)[-1])
    candidates = [path for path in candidates if path.is_dir() and path.name != "latest-run"]
    return candidates[-1] if candidates else None


def read_history(run_folder: Path) -> list[dict[str, Any]]:
    """Return the history rows of a W&B run folder, read with ``wandb leet inspect --json``."""
    wandb_cli = Path(sys.executable).with_name("wandb")
    command = str(wandb_cli) if wandb_cli.exists() else shutil.which("wandb")
    if command is None:
        log.warning("wandb command not found: the report has no validation curves")
        return []

    process = subprocess.run(
        [command, "leet", "inspect", "--json", str(run_folder)], capture_output=True, text=True, timeout=120
    )
    if process.returncode != 0:
        log.warning("cannot read %s with wandb leet inspect: %s", run_folder, process.stderr.strip()[-300:])
        return []

    rows = []
    for line in process.stdout.splitlines():
        if not line.strip():
            continue
        record = json.loads(line)
        if record.get("type") == "history":
            rows.append(record["history"]["item"])
    return rows


def split_val_curves(history: list[dict[str, Any]]) -> list[list[tuple[int, float]]]:
    """Return each round's (step within the round, ``val/acc``) points from a run's history.

    A round's row (the one with ``round``) carries ``trainer/global_step`` at the end of
    that round, so a validation pass belongs to the first round that ends at or after it.
    """
    round_ends = [row["trainer/global_step"] for row in history if "round" in row and "trainer/global_step" in row]
    curves: list[list[tuple[int, float]]] = [[] for _ in round_ends]
    for row in history:
        if "val/acc" not in row or "trainer/global_step" not in row:
            continue
        step = row["trainer/global_step"]
        for index, end in enumerate(round_ends):
            if step <= end:
                start = round_ends[index - 1] if index > 0 else 0
                curves[index].append((step - start, row["val/acc"]))
                break
    return curves


def find_runs(root: Path) -> list[RunRecord]:
    """Read every Hydra run folder with a ``rounds.json`` below ``root``, in path order.

    Raises:
        ConfigError: when ``root`` does not exist or contains no run.
    """
    if not root.is_dir():
        raise ConfigError(f"runs folder {root} not found: give the folder that contains the run folders, for example outputs")

    runs = []
    for rounds_file in sorted(root.rglob("rounds.json")):
        folder = rounds_file.parent
        entries = json.loads(rounds_file.read_text(encoding="utf-8"))
        if not entries:
            continue

        config = read_config(folder)
        wandb_folder = wandb_run_folder(folder)
        run_id = wandb_folder.name.rsplit("-", 1)[-1] if wandb_folder else None
        label = (config.get("logger") or {}).get("name") or str(folder.relative_to(root)) or folder.name
        curves = split_val_curves(read_history(wandb_folder)) if wandb_folder else []
        runs.append(RunRecord(folder, str(label), run_id, config, round_results(entries), curves))

    if not runs:
        raise ConfigError(f"no runs found below {root}: a run folder contains rounds.json after its first round")
    return runs


def config_value(config: dict[str, Any], dotted_key: str) -> Any:
    """Return ``config`` at a dotted key such as ``pruning.rate``, or None."""
    value: Any = config
    for part in dotted_key.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def flatten_config(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Return ``config`` as dotted keys to leaf values (lists stay whole)."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten_config(value, f"{dotted}."))
        else:
            flat[dotted] = value
    return flat


def varying_config_keys(runs: list[RunRecord]) -> list[str]:
    """Return the dotted config keys, outside the logger group, whose values differ between runs.

    They become trial table columns beside TRIAL_CONFIG_KEYS, so that runs which differ
    only in, say, ``pruning.rewind`` get distinct rows.
    """
    flat_configs = [flatten_config(run.config) for run in runs]
    keys = sorted(set().union(*flat_configs))
    varying = []
    for key in keys:
        if key.startswith("logger.") or key in TRIAL_CONFIG_KEYS:
            continue
        values = {repr(flat.get(key)) for flat in flat_configs}
        if len(values) > 1:
            varying.append(key)
    return varying


def trial_row(run: RunRecord, extra_keys: list[str] = ()) -> dict[str, Any]:
    """Return one trial table row: the run's main config values, ``extra_keys`` and its ticket results."""
    from lt_sweeps.imp import min_winning_remaining

    tolerance = config_value(run.config, "pruning.win_tolerance")
    best = max(run.results, key=lambda result: result.test_acc)
    row: dict[str, Any] = {"run": run.label}
    row.update({key: config_value(run.config, key) for key in TRIAL_CONFIG_KEYS})
    row.update({key: config_value(run.config, key) for key in extra_keys})
    row.update(
        {
            "dense_test_acc": run.results[0].test_acc,
            "best_test_acc": best.test_acc,
            "best_remaining": best.remaining,
            "min_winning_remaining": min_winning_remaining(
                run.results, DEFAULT_WIN_TOLERANCE if tolerance is None else tolerance
            ),
            "final_remaining": run.results[-1].remaining,
            "final_test_acc": run.results[-1].test_acc,
        }
    )
    return row


def png_bytes(figure: Any) -> bytes:
    """Return a matplotlib figure as PNG bytes and close it."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    plt.close(figure)
    return buffer.getvalue()


def new_figure() -> tuple[Any, Any]:
    """Return a (figure, axes) pair on the non-interactive Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(7, 4.2))


def finish_plot(figure: Any, axes: Any, x_label: str, y_label: str, title: str) -> bytes:
    """Label the axes, add a grid and a legend, and return the figure as PNG bytes."""
    axes.set_xlabel(x_label)
    axes.set_ylabel(y_label)
    axes.set_title(title)
    axes.grid(True, which="both", alpha=0.3)

    # A long legend goes beside the plot, where it cannot hide the lines.
    entries = len(axes.get_legend_handles_labels()[1])
    if entries > 6:
        axes.legend(fontsize="x-small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
        figure.set_size_inches(10, 4.2)
        figure.tight_layout()
    else:
        axes.legend(fontsize="small")
    return png_bytes(figure)


def plot_accuracy_vs_remaining(runs: list[RunRecord]) -> bytes:
    """Plot test accuracy (%) against weights remaining (%, log scale, decreasing): ticket solid, controls dashed."""
    import matplotlib.ticker

    from lt_sweeps import charts

    import matplotlib

    figure, axes = new_figure()
    # tab20 keeps up to 20 runs apart; beyond that colours repeat.
    palette = matplotlib.colormaps["tab10" if len(runs) <= 10 else "tab20"]
    for index, run in enumerate(runs):
        color = palette(index % palette.N)
        xs, ys, names = charts.accuracy_curves(run.results)
        for x, y, name in zip(xs, ys, names):
            style = "-o" if name == "ticket" else "--x"
            axes.plot([100 * value for value in x], [100 * value for value in y], style, color=color,
                      label=f"{run.label}: {name}", markersize=4)
    axes.set_xscale("log")
    axes.invert_xaxis()
    percent = matplotlib.ticker.FuncFormatter(lambda value, _: f"{value:g}")
    axes.xaxis.set_major_formatter(percent)
    axes.xaxis.set_minor_formatter(percent)
    return finish_plot(figure, axes, "weights remaining (%)", "test accuracy (%)", "Test accuracy against weights remaining")


def plot_val_curves(run: RunRecord) -> bytes:
    """Plot the validation accuracy (%) of every round against the step within the round."""
    import matplotlib

    figure, axes = new_figure()
    colormap = matplotlib.colormaps["viridis"]
    for index, curve in enumerate(run.val_curves):
        remaining = run.results[index].remaining if index < len(run.results) else None
        label = f"round {index}" + (f" ({100 * remaining:.1f}%)" if remaining is not None else "")
        color = colormap(index / max(1, len(run.val_curves) - 1))
        axes.plot([step for step, _ in curve], [100 * value for _, value in curve], "-", color=color, label=label)
    title = f"Validation accuracy of each round: {run.label}"
    return finish_plot(figure, axes, "step within the round", "validation accuracy (%)", title)


def plot_layer_sparsity(run: RunRecord) -> bytes:
    """Plot the fraction pruned (%) of each layer by round."""
    from lt_sweeps import charts

    figure, axes = new_figure()
    rounds = [result.round for result in run.results]
    for layer in charts.layer_names_of(run.results):
        values = [100 * result.layer_sparsity.get(layer, 0.0) for result in run.results]
        axes.plot(rounds, values, "-o", label=layer, markersize=4)
    return finish_plot(figure, axes, "round", "pruned (%)", f"Fraction pruned per layer: {run.label}")


def render_plots(runs: list[RunRecord]) -> dict[str, bytes]:
    """Return every plot of the report as PNG bytes, by a file-name-like key."""
    plots = {"accuracy_vs_remaining": plot_accuracy_vs_remaining(runs)}
    for index, run in enumerate(runs):
        if run.val_curves:
            plots[f"run{index}_val_acc_by_round"] = plot_val_curves(run)
        plots[f"run{index}_layer_sparsity"] = plot_layer_sparsity(run)
    return plots


def format_cell(value: Any) -> str:
    """Return a table cell as escaped text: fractions with 4 digits, None as a dash."""
    if value is None:
        return "&ndash;"
    if isinstance(value, float):
        return f"{value:.4f}"
    return html.escape(str(value))


def html_table(columns: list[str], rows: list[list[Any]]) -> str:
    """Return an HTML table with a header row."""
    header = "".join(f"<th>{html.escape(column)}</th>" for column in columns)
    body = "".join("<tr>" + "".join(f"<td>{format_cell(value)}</td>" for value in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{header}</tr></thead><tbody>{body}</tbody></table>"


def html_image(png: bytes, alt: str) -> str:
    """Return an <img> element with the PNG embedded as a data URI."""
    encoded = base64.b64encode(png).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{encoded}">'


STYLE = """
body { font-family: sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.85em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.5em; text-align: right; }
th { background: #f3f3f3; }
img { max-width: 100%; }
"""


def build_html(runs: list[RunRecord], title: str) -> str:
    """Return the offline report of ``runs`` as one self-contained HTML page."""
    from lt_sweeps import charts

    plots = render_plots(runs)
    extra_keys = varying_config_keys(runs)
    trial_rows = [trial_row(run, extra_keys) for run in runs]
    trial_columns = list(trial_rows[0])
    generated = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")

    parts = [
        "<!DOCTYPE html>",
        f'<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title><style>{STYLE}</style></head><body>',
        f"<h1>{html.escape(title)}</h1>",
        f"<p>{len(runs)} run{'' if len(runs) == 1 else 's'}, generated {generated}. Accuracies are fractions of the test set.</p>",
        "<h2>Trials</h2>",
        html_table(trial_columns, [[row[column] for column in trial_columns] for row in trial_rows]),
        "<h2>Test accuracy against weights remaining</h2>",
        html_image(plots["accuracy_vs_remaining"], "test accuracy against weights remaining"),
    ]
    for index, run in enumerate(runs):
        run_id = run.run_id or "no-wandb-run"
        parts.append(f"<h2>Run {html.escape(run.label)}</h2>")
        parts.append(f"<p>Folder <code>{html.escape(str(run.folder))}</code></p>")
        parts.append(
            html_table(charts.round_table_columns(run.results), charts.round_table_rows(run.results, run_id))
        )
        if f"run{index}_val_acc_by_round" in plots:
            parts.append(html_image(plots[f"run{index}_val_acc_by_round"], f"validation accuracy of each round, {run.label}"))
        parts.append(html_image(plots[f"run{index}_layer_sparsity"], f"fraction pruned per layer, {run.label}"))
    parts.append("</body></html>")
    return "\n".join(parts)


def build_online_report(entity: str, project: str, sweep: str | None = None, group: str | None = None,
                        title: str | None = None) -> Any:
    """Return an unsaved W&B Report of a sweep or group with the lottery-ticket panels.

    Raises:
        ConfigError: when wandb-workspaces is not installed, or neither or both of
            ``sweep`` and ``group`` are given.
    """
    try:
        import wandb_workspaces.reports.v2 as wr
    except ImportError:
        raise ConfigError('online reports need wandb-workspaces: pip install "lt-sweeps[reports]"') from None
    if (sweep is None) == (group is None):
        raise ConfigError("give exactly one of --sweep ID and --group NAME")

    selection = f"sweep {sweep}" if sweep else f"group {group}"
    filters = f"Metric('Sweep') == '{sweep}'" if sweep else f"Metric('Group') == '{group}'"
    runset = wr.Runset(entity=entity, project=project, name=selection, filters=filters)
    panels = [
        wr.LinePlot(
            title="Test accuracy against weights remaining",
            x="ticket/remaining",
            y=["ticket/test_acc", "control/reinit_test_acc", "control/random_mask_test_acc"],
            log_x=True,
        ),
        wr.LinePlot(title="Validation accuracy", x="trainer/global_step", y=["val/acc"]),
        wr.LinePlot(title="Fraction pruned per layer", x="round", metric_regex="sparsity/.*"),
        wr.ScatterPlot(title="Smallest winning ticket", x="ticket/dense_test_acc", y="ticket/min_winning_remaining"),
        wr.ParallelCoordinatesPlot(
            columns=[
                wr.ParallelCoordinatesPlotColumn(metric="c::pruning.rate"),
                wr.ParallelCoordinatesPlotColumn(metric="c::optimizer.lr"),
                wr.ParallelCoordinatesPlotColumn(metric="ticket/min_winning_remaining"),
            ]
        ),
    ]
    blocks = [
        wr.H1(title or f"Lottery tickets: {selection}"),
        wr.P("Ticket and control accuracy against weights remaining, validation curves, per-layer sparsity "
             "and the trial table of every run."),
        wr.PanelGrid(runsets=[runset], panels=panels),
        wr.H2("Round tables"),
        wr.PanelGrid(runsets=[runset], panels=[wr.WeavePanelSummaryTable(table_name="charts/rounds")]),
    ]
    return wr.Report(entity=entity, project=project, title=title or f"Lottery tickets: {selection}", blocks=blocks)


def run_command(arguments: argparse.Namespace) -> int:
    """Write the offline HTML report, or save the online W&B Report with ``--online``."""
    if arguments.online:
        if not arguments.entity:
            raise ConfigError("--online needs --entity, the W&B entity of the project")
        # NOTE: saving needs a W&B server, so no test here runs this branch past building the report.
        report = build_online_report(arguments.entity, arguments.project, arguments.sweep, arguments.group, arguments.title)
        report.save()
        print(report.url)
        return 0

    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise ConfigError('offline reports need matplotlib: pip install "lt-sweeps[reports]"') from None

    runs = find_runs(Path(arguments.runs_dir))
    title = arguments.title or f"Lottery tickets in {arguments.runs_dir}"
    output = Path(arguments.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(build_html(runs, title), encoding="utf-8")
    log.info("report of %d run%s written to %s", len(runs), "" if len(runs) == 1 else "s", output)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``report`` subcommand."""
    parser = subparsers.add_parser(
        "report",
        help="HTML report of local runs, or a W&B Report with --online",
        description="Write a self-contained HTML report of the runs below a folder, "
        "or save a W&B Report of a sweep or group with --online.",
    )
    parser.add_argument("runs_dir", nargs="?", default="outputs", help="folder searched for run folders (default: outputs)")
    parser.add_argument("-o", "--output", default="report.html", help="HTML file to write (default: report.html)")
    parser.add_argument("--title", help="report title")
    parser.add_argument("--online", action="store_true", help="save a W&B Report instead of writing HTML")
    parser.add_argument("--entity", help="W&B entity (with --online)")
    parser.add_argument("--project", default="lt-sweeps", help="W&B project (with --online, default: lt-sweeps)")
    parser.add_argument("--sweep", help="W&B sweep id whose runs the report shows (with --online)")
    parser.add_argument("--group", help="W&B run group whose runs the report shows (with --online)")
    parser.set_defaults(handler=run_command)

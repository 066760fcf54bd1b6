"""The `lpa` command line: data, features, train, tune, backtest, serve, recommend, demo."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from pipelines.choices import Target, TrainChoice, TunableKind
from pipelines.cluster import ClusterOption, SchedulerOption
from pipelines.config import resolve_workdir

__all__ = ["app", "main"]

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="lp-allocator: forecast DeFi pool liquidity needs and allocate LP capital.")
data_app = typer.Typer(no_args_is_help=True, help="Pool data: synthesise, import, validate, info.")
features_app = typer.Typer(no_args_is_help=True, help="Feature tables and forward labels.")
app.add_typer(data_app, name="data")
app.add_typer(features_app, name="features")

# wide tables when output is not a terminal (CI logs, files)
console = Console(width=None if sys.stdout.isatty() else 200)
err_console = Console(stderr=True, width=None if sys.stderr.isatty() else 200)
_STATE: dict[str, Any] = {"debug": False}

Workdir = Annotated[
    Path | None,
    typer.Option("--workdir", "-w", envvar="LPA_HOME",
                 help="Work directory (default ./lpa-work, env LPA_HOME)."),
]


@app.callback()
def _root(debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks.")] = False) -> None:
    """lp-allocator command line."""
    _STATE["debug"] = debug


def _run(fn: Callable[[], Any]) -> Any:
    """Run a command body; user errors become a one-paragraph message and exit code 1."""
    try:
        return fn()
    except typer.Exit:
        raise
    except (ValueError, FileNotFoundError, KeyError, RuntimeError) as exc:
        if _STATE["debug"]:
            raise
        _print_error(exc)
        raise typer.Exit(code=1) from None


def _print_error(exc: BaseException) -> None:
    """Print an error in one paragraph; its text is never read as Rich markup.

    DataValidationError ends in a '[file=..., row=..., rule=...]' suffix that markup
    would swallow as a style tag.
    """
    from rich.text import Text

    msg = Text("error", style="bold red")
    msg.append(f" ({type(exc).__name__}): {exc}")
    err_console.print(msg, soft_wrap=True)
    err_console.print("Re-run with `lpa --debug ...` for the traceback.", style="dim",
                      markup=False)


def _table(title: str, columns: list[str], rows: list[list[Any]]) -> Table:
    """Build a rich table from plain rows."""
    t = Table(title=title)
    for c in columns:
        t.add_column(c)
    for r in rows:
        t.add_row(*[f"{v:.4g}" if isinstance(v, float) else str(v) for v in r])
    return t


@data_app.command("synth")
def data_synth(
    workdir: Workdir = None,
    pools: Annotated[int, typer.Option(help="Number of pools.")] = 30,
    days: Annotated[int, typer.Option(help="Days of history.")] = 180,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    freq: Annotated[str, typer.Option(help="Panel frequency: 1h or 1d (simulated).")] = "1h",
) -> None:
    """Simulate a seeded market of interconnected pools into the work directory."""

    def body() -> None:
        from features.sources.simulator import simulate_market
        from features.sources.store import write_panel

        wd = resolve_workdir(workdir)
        with console.status(f"simulating {pools} pools x {days} days ({freq})"):
            panel, truth = simulate_market(n_pools=pools, days=days, seed=seed, freq=freq)
            path = write_panel(panel, wd, truth=truth, extra={"seed": seed})
        console.print(f"wrote {len(panel.frame):,} rows for {len(panel.meta)} pools to {path}")

    _run(body)


@data_app.command("import")
def data_import(
    paths: Annotated[list[Path], typer.Argument(help="Export files or folders.")],
    fmt: Annotated[str, typer.Option("--format", help=(
        "uniswap-v3-subgraph | uniswap-v2-subgraph | table | demeter-minute"))]
    = "uniswap-v3-subgraph",
    workdir: Workdir = None,
    strict: Annotated[bool, typer.Option(
        help="Refuse every repair rule (harmless trims are still applied and reported).")]
    = False,
    pools_csv: Annotated[Path | None, typer.Option(help="Pool metadata CSV.")] = None,
    mapping: Annotated[str | None, typer.Option(
        help="Column mapping for --format table, JSON {contract field: source column}; "
             "one source column may feed several fields.")] = None,
    sep: Annotated[str, typer.Option(help="CSV separator.")] = ",",
    thousands: Annotated[str | None, typer.Option(help="Thousands separator.")] = None,
    date_format: Annotated[str | None, typer.Option(
        help="strptime format of date strings (table and subgraph formats), e.g. "
             "'%m/%d/%Y %H:%M'.")] = None,
    freq: Annotated[str | None, typer.Option(
        help="Declared frequency 1min | 1h | 1d (else inferred); with demeter-minute, 1h or "
             "1d aggregates the minutes.")] = None,
    invert_price: Annotated[bool, typer.Option(
        help="--format table: prices are token1 in token0; invert them.")] = False,
    usd_price: Annotated[list[str] | None, typer.Option(
        help="Constant USD price TOKEN=VALUE for a token with no pool path to a stablecoin "
             "(repeatable).")] = None,
    usd_prices: Annotated[Path | None, typer.Option(
        help="CSV of timestamp,token,price_usd for tokens with no pool path to a "
             "stablecoin.")] = None,
) -> None:
    """Import real pool exports, clean them by explicit rules, validate and store the panel."""

    def body() -> None:
        from features.sources.cleaning import TRIMS
        from features.sources.importer import import_exports
        from features.sources.store import write_panel

        try:
            cols = json.loads(mapping) if mapping else None
        except json.JSONDecodeError as exc:
            raise ValueError(f"--mapping is not valid JSON ({exc}); expected e.g. "
                             '\'{"close": "token1Price", "tvl_usd": "TVL"}\'') from None
        wd = resolve_workdir(workdir)
        panel, report = import_exports(
            list(paths), fmt, strict=strict, pools_csv=pools_csv, mapping=cols, sep=sep,
            thousands=thousands, date_format=date_format, freq=freq,
            invert_price=invert_price, usd_price=usd_price, usd_prices=usd_prices,
        )
        console.print(_table("cleaning rules applied",
                             ["rule", "kind", "what it does", "rows touched"],
                             [[r, "trim" if r in TRIMS else "repair", d, n]
                              for r, d, n in report.rows()]))
        path = write_panel(panel, wd, extra={"cleaning": report.to_dict()})
        console.print(f"wrote {len(panel.frame):,} rows for {len(panel.meta)} pools "
                      f"({panel.freq}) to {path}", markup=False)

    _run(body)


@data_app.command("validate")
def data_validate(workdir: Workdir = None) -> None:
    """Re-validate the stored panel against the contract."""

    def body() -> None:
        import pandas as pd

        from features.schema import freq_step, validate_panel
        from features.sources.store import panel_dir, read_panel

        wd = resolve_workdir(workdir)
        panel = read_panel(wd)
        # real data cannot be stamped after now; a simulated market may run ahead of the clock
        latest = None if panel.info.get("simulated") else (
            pd.Timestamp.now(tz="UTC") + freq_step(panel.freq))
        validate_panel(panel.frame, panel.meta, panel.freq, source=str(panel_dir(wd)),
                       latest=latest)
        console.print(f"[green]valid[/]: {len(panel.frame):,} rows, {len(panel.meta)} pools, "
                      f"frequency {panel.freq}")

    _run(body)


@data_app.command("info")
def data_info(workdir: Workdir = None) -> None:
    """Summarise the stored panel: pools, frequency, date range, gaps."""

    def body() -> None:
        from features.schema import MISSING, POOL_ID, TIMESTAMP, TVL_USD, VOLUME_USD
        from features.sources.store import read_panel

        panel = read_panel(resolve_workdir(workdir))
        f = panel.frame
        console.print(f"{len(panel.meta)} pools, frequency {panel.freq}, "
                      f"{f[TIMESTAMP].min()} -> {f[TIMESTAMP].max()}, {len(f):,} rows, "
                      f"{int(f[MISSING].sum()):,} missing periods")
        g = f.groupby(POOL_ID)
        summary = panel.meta.set_index(POOL_ID).join(
            g.agg(rows=(TIMESTAMP, "size"), gaps=(MISSING, "sum"),
                  tvl=(TVL_USD, "median"), volume=(VOLUME_USD, "median")))
        rows = [[pid, r["protocol"], f"{r['token0']}/{r['token1']}", r["fee_tier"], int(r["rows"]),
                 int(r["gaps"]), float(r["tvl"]), float(r["volume"])]
                for pid, r in summary.iterrows()]
        console.print(_table("pools", ["pool", "protocol", "pair", "fee", "rows", "gaps",
                                       "median TVL USD", "median volume USD"], rows))

    _run(body)


@features_app.command("build")
def features_build(
    workdir: Workdir = None,
    config: Annotated[Path | None, typer.Option(help="TOML config; reads \\[features].")]
    = None,
    horizon: Annotated[str | None, typer.Option(help="Label horizon, e.g. 24h or 7d.")] = None,
    cluster: ClusterOption = None,
    scheduler: SchedulerOption = None,
) -> None:
    """Build the feature table and forward labels from the stored panel."""

    def body() -> None:
        from features.build import FeatureConfig, build_features, feature_columns, write_features
        from features.sources.store import read_panel
        from pipelines.config import config_from

        wd = resolve_workdir(workdir)
        cfg = config_from(FeatureConfig, config, "features", horizon=horizon)
        if cluster or scheduler:
            from features.distributed import build_features_distributed
            from pipelines.cluster import dask_client

            with dask_client(cluster, scheduler) as client:
                res = build_features_distributed(client, wd, cfg)
            console.print(f"wrote {res.rows:,} rows x {res.n_features} features, labels over "
                          f"{res.horizon} (feature set {res.version}, {res.parts} partitions "
                          f"of pools on the cluster) to {res.path}", markup=False)
            return
        panel = read_panel(wd)
        fs = build_features(panel, cfg, progress=True)
        path = write_features(fs, wd)
        n_feat = len(feature_columns(fs.features))
        console.print(f"wrote {len(fs.features):,} rows x {n_feat} features, labels over "
                      f"{fs.horizon} (feature set {fs.version}) to {path}", markup=False)

    _run(body)


@app.command("train")
def train_cmd(
    workdir: Workdir = None,
    model: Annotated[TrainChoice | None, typer.Option(
        help="Model kind to train; all = baseline, lightgbm and torch (default: the models "
             "of --config, else all).")] = None,
    folds: Annotated[int | None, typer.Option(min=1, help="Walk-forward folds.")] = None,
    config: Annotated[Path | None, typer.Option(help="TOML config; reads \\[train].")] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed.")] = None,
    register_all: Annotated[bool, typer.Option(
        "--register-all", help="Register every refit model, not only a new champion.")]
    = False,
    threads: Annotated[int | None, typer.Option(
        min=1, help="Threads per model fit (default: env LPA_THREADS, else the CPUs "
                    "available).")] = None,
    cluster: ClusterOption = None,
    scheduler: SchedulerOption = None,
) -> None:
    """Fit, evaluate walk-forward, log to MLflow; register a model that beats the champion."""

    def body() -> None:
        from pipelines.runtime import prefer_passive_waiting

        prefer_passive_waiting()  # before LightGBM and torch load
        from models.names import DEFAULT_KINDS
        from pipelines.config import config_from
        from pipelines.train import TrainConfig, train

        wd = resolve_workdir(workdir)
        models = (None if model is None else list(DEFAULT_KINDS) if model is TrainChoice.all
                  else [model.value])
        cfg = config_from(TrainConfig, config, "train", models=models, n_folds=folds, seed=seed,
                          register_all=register_all or None, threads=threads)
        from models.gbm_dask import use_dask
        from pipelines.cluster import dask_client

        with dask_client(cluster, scheduler) as client, use_dask(client):
            res = train(wd, cfg, progress=True)  # LightGBM fits train on the cluster if any
        console.print(_table("walk-forward evaluation", res.summary_columns(),
                             res.summary_rows()))
        for target, why in res.decisions.items():
            console.print(f"{target}: {why}", markup=False)

    _run(body)


@app.command("tune")
def tune_cmd(
    workdir: Workdir = None,
    trials: Annotated[int, typer.Option(min=1, help="Trials to add to the study.")] = 20,
    model: Annotated[TunableKind, typer.Option(help="Model kind to tune.")]
    = TunableKind.lightgbm,
    target: Annotated[Target, typer.Option(help="Target to tune for.")] = Target.fee_yield,
    storage: Annotated[str | None, typer.Option(
        help="Optuna storage URL (default sqlite in the work dir; postgresql://... for workers)",
        envvar="LPA_OPTUNA_STORAGE")] = None,
    study: Annotated[str | None, typer.Option(help="Study name (resumes if it exists).")] = None,
    threads: Annotated[int | None, typer.Option(
        min=1, help="Threads per model fit (default: env LPA_THREADS, else the CPUs "
                    "available).")] = None,
    folds: Annotated[int, typer.Option(min=1, help="Walk-forward folds per trial.")] = 3,
    seed: Annotated[int, typer.Option(help="Random seed of the models and the sampler.")] = 0,
    worker: Annotated[int | None, typer.Option(
        min=0, envvar="LPA_WORKER",
        help="This worker's number on a shared study; its sampler's seed is made of "
             "--seed, the worker number (default on a --storage server: the process id) and "
             "the trials already in the study.")] = None,
) -> None:
    """Tune a model's hyper-parameters with Optuna on walk-forward folds."""

    def body() -> None:
        from pipelines.runtime import prefer_passive_waiting

        prefer_passive_waiting()  # before LightGBM and torch load
        from pipelines.tune import tune

        res = tune(resolve_workdir(workdir), model=model.value, target=target.value,
                   trials=trials, storage=storage, study_name=study, progress=True,
                   threads=threads, n_folds=folds, seed=seed, worker=worker)
        console.print(_table("tuning", res.summary_columns(), res.summary_rows()))

    _run(body)


@app.command("backtest")
def backtest_cmd(
    workdir: Workdir = None,
    model: Annotated[str | None, typer.Option(help="baseline | lightgbm | torch")] = None,
    config: Annotated[Path | None, typer.Option(help="TOML config; reads [backtest].")] = None,
    capital: Annotated[float | None, typer.Option(help="Starting capital, USD.")] = None,
) -> None:
    """Walk-forward backtest of the allocator against baselines and the hindsight oracle."""

    def body() -> None:
        from features.build import read_features
        from features.sources.store import read_panel, read_truth
        from pipelines.backtest.engine import BacktestConfig, run_backtest
        from pipelines.config import config_from

        wd = resolve_workdir(workdir)
        cfg = config_from(BacktestConfig, config, "backtest", model=model, capital_usd=capital)
        res = run_backtest(read_panel(wd), read_features(wd), cfg, workdir=wd,
                           truth=read_truth(wd), progress=True)
        _print_metrics(res.metrics)
        for w in res.warnings:
            console.print(f"warning: {w}", markup=False)
        console.print(f"report: {res.report_dir}")

    _run(body)


def _print_metrics(metrics: dict[str, dict[str, float]]) -> None:
    """Print the strategy x metric table."""
    from pipelines.backtest.metrics import SUMMARY as names

    rows = [[s, *[float(m.get(n, float("nan"))) for n in names]] for s, m in metrics.items()]
    console.print(_table("backtest (fractions of starting capital)", ["strategy", *names], rows))


@app.command("serve")
def serve_cmd(
    workdir: Workdir = None,
    host: Annotated[str, typer.Option(help="Bind address.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8000,
) -> None:
    """Serve allocation recommendations over HTTP (FastAPI + uvicorn)."""

    def body() -> None:
        from pipelines.service.app import run_server

        run_server(resolve_workdir(workdir), host=host, port=port)

    _run(body)


@app.command("recommend")
def recommend_cmd(
    pools: Annotated[str, typer.Option(help="Comma-separated pool ids (default: all).")] = "",
    capital: Annotated[float | None, typer.Option(
        help="Capital to allocate, USD (default: the allocator's).")] = None,
    risk_aversion: Annotated[float, typer.Option(help="Weight of the fee-spread downside "
                                                 "term (0: expected P&L).")] = 0.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    workdir: Workdir = None,
) -> None:
    """Print an allocation recommendation without a server."""

    def body() -> None:
        from models.allocation import DEFAULT_CAPITAL_USD
        from pipelines.service.recommend import (
            parse_pool_ids,
            recommend_from_workdir,
            recommendation_title,
        )

        resp = recommend_from_workdir(resolve_workdir(workdir), parse_pool_ids(pools),
                                      capital or DEFAULT_CAPITAL_USD, risk_aversion=risk_aversion)
        if as_json:
            typer.echo(resp.model_dump_json(indent=2))
            return
        rows = [[p.pool_id, p.weight, p.move_usd, p.expected_fee_yield, p.p_stress, p.reason]
                for p in resp.pools]
        console.print(_table(recommendation_title(resp),
                             ["pool", "weight", "move USD", "fee yield", "P(stress)", "reason"],
                             rows))

    _run(body)


@app.command("demo")
def demo_cmd(
    workdir: Workdir = None,
    data: Annotated[Path | None, typer.Option(help="Run on real exports instead.")] = None,
    fmt: Annotated[str, typer.Option("--format", help="Format of --data.")]
    = "uniswap-v3-subgraph",
    pools: Annotated[int, typer.Option(help="Simulated pools.")] = 30,
    days: Annotated[int, typer.Option(help="Simulated days.")] = 180,
    seed: Annotated[int, typer.Option(help="Seed.")] = 0,
    models: Annotated[str, typer.Option(
        help="Comma-separated model kinds to train: baseline, seasonal_naive, lightgbm, "
             "torch.")] = "baseline,lightgbm,torch",
    threads: Annotated[int | None, typer.Option(
        min=1, help="Threads per model fit (default: env LPA_THREADS, else the CPUs "
                    "available).")] = None,
) -> None:
    """Run data -> features -> train -> register -> backtest end to end and print the table."""

    def body() -> None:
        from models.names import ModelKind
        from pipelines.demo import run_demo

        kinds = [m.strip() for m in models.split(",") if m.strip()]
        bad = [m for m in kinds if m not in set(ModelKind)]
        if bad:
            raise ValueError(f"--models: unknown kind(s) {bad}; expected some of "
                             f"{[k.value for k in ModelKind]}")
        wd = resolve_workdir(workdir)
        res = run_demo(wd, console, data=data, fmt=fmt, pools=pools, days=days, seed=seed,
                       models=kinds, threads=threads)
        _print_metrics(res.metrics)
        for w in res.warnings:
            console.print(f"warning: {w}", markup=False)
        console.print(f"report: {res.report_dir}")
        console.print(f"MLflow UI: mlflow ui --backend-store-uri sqlite:///{wd / 'mlflow.db'}")
        console.print(f"service:   lpa serve --workdir {wd}")

    _run(body)


@app.command("replay")
def replay_cmd(
    pool: Annotated[str, typer.Option(help="Pool id or a unique prefix of it.")],
    capital: Annotated[float, typer.Option(help="Deposit, quote-token units.")] = 10_000.0,
    width: Annotated[float | None, typer.Option(
        help="Range half-width around the first price, quote units (200: price ± 200).")] = None,
    lower: Annotated[float | None, typer.Option(help="Lower bound, quote price.")] = None,
    upper: Annotated[float | None, typer.Option(help="Upper bound, quote price.")] = None,
    start: Annotated[str | None, typer.Option(help="First day or timestamp (UTC).")] = None,
    end: Annotated[str | None, typer.Option(help="Last day (inclusive) or timestamp.")] = None,
    recenter: Annotated[bool, typer.Option(
        "--recenter", help="Re-centre (same width) after a period that closes out of range.")]
    = False,
    quote: Annotated[str | None, typer.Option(
        help="Quote token: symbol, token0 or token1 (default: the stablecoin leg).")] = None,
    entry_swap_fee: Annotated[bool, typer.Option(
        "--entry-swap-fee", help="Pay the fee tier on the half swapped at entry.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    workdir: Workdir = None,
) -> None:
    """Replay one LP position on a stored pool: NAV, fees, IL versus HODL, LVR, time in range."""

    def body() -> None:
        from pipelines.replay import run_replay

        run = run_replay(resolve_workdir(workdir), pool, capital=capital, width=width,
                         lower=lower, upper=upper, start=start, end=end, recenter=recenter,
                         quote=quote, entry_swap_fee=entry_swap_fee)
        r = run.result
        if as_json:
            typer.echo(json.dumps({**r.summary(), "report_dir": str(run.report_dir)},
                                  indent=2, default=str))
            return
        rows: list[list[Any]] = [
            ["final NAV", f"{r.final_nav:,.2f}", r.quote],
            ["fees", f"{r.fees:,.2f}", r.quote],
            ["IL versus HODL", f"{r.il_quote:,.2f}", f"{r.quote} ({r.il:.3%})"],
            ["HODL value", f"{r.hodl:,.2f}", r.quote],
            ["LVR estimate", f"{r.lvr:,.2f}", f"{r.quote} ({r.lvr_fraction:.3%} of capital)"],
            ["time in range", f"{r.time_in_range:.2%}", "of the periods"],
            ["re-centres", r.recentres, f"costs {r.costs:,.2f} {r.quote}"],
            ["rows", r.rows, f"{r.freq}, fee share from {r.fee_share_source}"]]
        console.print(_table(f"replay {r.pool_id} ({r.base}/{r.quote}, capital "
                             f"{r.capital:,.0f} {r.quote})", ["", "value", "unit"], rows))
        for note in r.notes:
            console.print(f"note: {note}", markup=False)
        console.print(f"report: {run.report_dir}")

    _run(body)


@app.command("route")
def route_cmd(
    from_token: Annotated[str, typer.Option("--from", help="Token sold (symbol).")],
    to_token: Annotated[str, typer.Option("--to", help="Token bought (symbol).")],
    amount: Annotated[float, typer.Option(help="Amount sold, in units of the --from token.")],
    max_hops: Annotated[int, typer.Option(help="Longest path, in pools.")] = 2,
    chain: Annotated[str | None, typer.Option(
        help="Chain to trade on (default: the one with the most TVL on the route).")] = None,
    gas_usd: Annotated[float | None, typer.Option(
        help="USD of gas per pool touched; pools that do not earn it are left out.")] = None,
    chain_gas: Annotated[bool, typer.Option(
        "--chain-gas", help="Price gas per pool from the per-chain gas table.")] = False,
    at: Annotated[str | None, typer.Option(
        help="Route on the pool state at this date or timestamp (UTC) instead of the latest.")]
    = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    workdir: Workdir = None,
) -> None:
    """Split a trade optimally across the stored pools and multi-hop paths (latest state)."""

    def body() -> None:
        from pipelines.route import run_route, summary_rows

        res = run_route(resolve_workdir(workdir), from_token, to_token, amount,
                        gas_usd=gas_usd, chain_gas=chain_gas, max_hops=max_hops, chain=chain,
                        at=at)
        if as_json:
            typer.echo(json.dumps(res.to_dict(), indent=2, default=str))
            return
        console.print(_table(f"route {res.amount_in:,.6g} {res.token_in} -> {res.token_out}",
                             ["", "value", "unit"], summary_rows(res)))
        console.print(_table("splits", ["path", "pools", f"in ({res.token_in})",
                                        f"out ({res.token_out})"],
                             [[" > ".join(s["path"]), ", ".join(s["pool_ids"]),
                               f"{s['amount_in']:,.6g}", f"{s['amount_out']:,.6g}"]
                              for s in res.splits]))

    _run(body)

def main() -> None:
    """Entry point for `python -m pipelines.cli`."""
    app(prog_name="lpa")


if __name__ == "__main__":
    main()

"""`lpa data` and `lpa features`: simulate, import, validate, summarise; build features."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from pipelines.cluster import ClusterOption, SchedulerOption
from pipelines.commands.common import Workdir, console, run, table
from pipelines.config import resolve_workdir

__all__ = ["data_app", "features_app"]

data_app = typer.Typer(no_args_is_help=True, help="Pool data: synthesise, import, validate, info.")
features_app = typer.Typer(no_args_is_help=True, help="Feature tables and forward labels.")


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

    run(body)


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
        console.print(table("cleaning rules applied",
                             ["rule", "kind", "what it does", "rows touched"],
                             [[r, "trim" if r in TRIMS else "repair", d, n]
                              for r, d, n in report.rows()]))
        path = write_panel(panel, wd, extra={"cleaning": report.to_dict()})
        console.print(f"wrote {len(panel.frame):,} rows for {len(panel.meta)} pools "
                      f"({panel.freq}) to {path}", markup=False)

    run(body)


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

    run(body)


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
        console.print(table("pools", ["pool", "protocol", "pair", "fee", "rows", "gaps",
                                       "median TVL USD", "median volume USD"], rows))

    run(body)


@features_app.command("build")
def features_build(
    workdir: Workdir = None,
    config: Annotated[Path | None, typer.Option(help="TOML config; reads \\[features].")]
    = None,
    horizon: Annotated[str | None, typer.Option(help="Label horizon, e.g. 24h or 7d.")] = None,
    cluster: ClusterOption = None,
    scheduler: SchedulerOption = None,
    partitions: Annotated[int | None, typer.Option(
        min=1, help="Build in this process in N partitions of pools, each written as it goes "
        "(memory of one partition, not the whole table). Default: one table, or partitions "
        "when it would not fit in the available memory.")] = None,
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
                res = build_features_distributed(client, wd, cfg, partitions=partitions)
            console.print(f"wrote {res.rows:,} rows x {res.n_features} features, labels over "
                          f"{res.horizon} (feature set {res.version}, {res.parts} partitions "
                          f"of pools on the cluster) to {res.path}", markup=False)
            return
        from features import partitioned

        parts = partitions
        check = partitioned.memory_check(wd) if parts is None else None
        if check is not None and check.partitions is not None:
            console.print(f"the single-process build (about {check.need_gib:.1f} GiB) would "
                          f"not fit in the {check.available_gib:.1f} GiB available: building "
                          f"in {check.partitions} partition(s)", markup=False)
            parts = check.partitions
        if parts is not None:
            res = partitioned.build_features_partitioned(wd, cfg, parts, progress=True)
            console.print(f"wrote {res.rows:,} rows x {res.n_features} features, labels over "
                          f"{res.horizon} (feature set {res.version}, {res.parts} partition(s) "
                          f"of pools, in this process) to {res.path}", markup=False)
            return
        panel = read_panel(wd)
        fs = build_features(panel, cfg, progress=True)
        path = write_features(fs, wd)
        n_feat = len(feature_columns(fs.features))
        console.print(f"wrote {len(fs.features):,} rows x {n_feat} features, labels over "
                      f"{fs.horizon} (feature set {fs.version}) to {path}", markup=False)

    run(body)

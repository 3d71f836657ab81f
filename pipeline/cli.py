"""``flowcms``: the command line. The only module that prints or exits.

Every command works on a *site*: a folder with ``flowcms.toml`` (usually a git
repository). ``--site`` picks it; the default is the current folder when it holds a
``flowcms.toml``, else the bundled sample site. Build state lives in ``<site>/.flowcms``.
"""

from __future__ import annotations

import datetime as dt
import json
import signal
import sys
import tomllib
from functools import partial
from pathlib import Path
from typing import Any

import click
from rich.console import Console

from pipeline import dates
from pipeline.build import BuildOptions, BuildResult, build_site
from pipeline.errors import BuildFailed, PipelineError
from pipeline.publish import BuildDiff, diff_builds, publish, purge_set, rollback
from pipeline.source import open_source
from pipeline.store import Store

BUNDLED_SITE = Path(__file__).resolve().parent.parent / "content"
STATE_DIR = ".flowcms"

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def default_site() -> Path:
    cwd = Path.cwd()
    return cwd if (cwd / "flowcms.toml").exists() else BUNDLED_SITE


def published_branch(site: Path) -> str:
    """The branch named in the working copy's flowcms.toml (default ``main``)."""
    try:
        data = tomllib.loads((site / "flowcms.toml").read_text())
        return str(data.get("build", {}).get("branch", "main"))
    except (OSError, tomllib.TOMLDecodeError):
        return "main"


class Site:
    def __init__(self, path: Path) -> None:
        self.path = path.resolve()
        self.store = Store(self.path / STATE_DIR)
        self.branch = published_branch(self.path)


pass_site = click.make_pass_decorator(Site)


def fail(message: str) -> None:
    err.print(f"[bold red]error:[/] {message}")
    sys.exit(1)


def run_build(site: Site, *, ref: str | None, full: bool, as_of: str | None,
              workers: int | None, dry_run: bool = False) -> BuildResult:
    source = open_source(site.path, ref, site.branch)
    options = BuildOptions(full=full, as_of=as_of, workers=workers, ref=ref or site.branch,
                           dry_run=dry_run)
    from rich.progress import (  # imported here: not every command pays for it
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
    )

    columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
               MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=err, transient=True) as bar:
        task = bar.add_task(f"building {site.path.name} @ {source.revision.commit[:12]}", total=None)

        def progress(stage: str, done: int, total: int) -> None:
            bar.update(task, description=f"{stage} {site.path.name}", completed=done, total=total)

        return build_site(source, site.store, previous=site.store.live(), options=options,
                          progress=progress)


def report_failure(exc: BuildFailed, site: Site) -> None:
    for e in exc.errors:
        err.print(str(e), markup=False)
    err.print(f"[bold red]{exc}[/]; the live site was not touched")
    sys.exit(1)


def print_result(result: BuildResult) -> None:
    for w in result.warnings:
        err.print(f"[yellow]warning:[/] {w}", markup=True)
    from rich.table import Table

    table = Table(show_header=True, header_style="bold", box=None)
    for col in ("build", "outputs", "rendered", "reused", "removed", "entries", "live", "seconds"):
        table.add_column(col, justify="right" if col != "build" else "left")
    table.add_row(result.build_id[:12] or "-", str(result.outputs), str(result.rendered),
                  str(result.reused), str(result.removed), str(result.entries),
                  str(result.live_entries), f"{result.seconds:.3f}")
    out.print(table)


def print_diff(diff: BuildDiff) -> None:
    purges = purge_set(diff)
    out.print(f"{len(diff.added)} added, {len(diff.changed)} changed, {len(diff.removed)} removed; "
              f"purge: {len(purges.paths)} paths, {len(purges.keys)} API keys")


as_of_option = click.option("--as-of", help="Instant that decides what is live (ISO 8601; default now).")
workers_option = click.option("--workers", type=int, help="Render processes (default: all cores).")


def _as_of(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return dates.normalise(value)
    except dates.DateParseError as exc:
        raise click.BadParameter(str(exc), param_hint="--as-of") from None


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--site", type=click.Path(file_okay=False, path_type=Path), envvar="FLOWCMS_SITE",
              help="Site folder (default: . if it has flowcms.toml, else the bundled sample).")
@click.version_option(package_name="flowcms")
@click.pass_context
def main(ctx: click.Context, site: Path | None) -> None:
    """FlowCMS: a git-based CMS that builds content-addressed sites and publishes atomically."""
    if ctx.invoked_subcommand == "init":
        return
    ctx.obj = Site(site or default_site())


@main.command()
@click.option("--ref", help="Branch, tag or commit to build (default: the published branch).")
@click.option("--full", is_flag=True, help="Ignore the previous build; render everything.")
@as_of_option
@workers_option
@click.option("--json", "as_json", is_flag=True, help="Print the build id and figures as JSON.")
@pass_site
def build(site: Site, ref: str | None, full: bool, as_of: str | None, workers: int | None, as_json: bool) -> None:
    """Build a ref into the store without publishing it."""
    try:
        result = run_build(site, ref=ref, full=full, as_of=_as_of(as_of), workers=workers)
    except BuildFailed as exc:
        report_failure(exc, site)
    except PipelineError as exc:
        fail(str(exc))
    if as_json:
        sys.stdout.write(json.dumps({"id": result.build_id, "previous": result.previous_id,
                                     "rendered": result.rendered, "reused": result.reused,
                                     "seconds": result.seconds}) + "\n")
        return
    print_result(result)


@main.command("check")
@click.option("--ref", help="Branch, tag or commit to check.")
@pass_site
def check(site: Site, ref: str | None) -> None:
    """Validate every file and template; report all problems; write nothing."""
    try:
        result = run_build(site, ref=ref, full=False, as_of=None, workers=None, dry_run=True)
    except BuildFailed as exc:
        report_failure(exc, site)
    except PipelineError as exc:
        fail(str(exc))
    for w in result.warnings:
        err.print(f"[yellow]warning:[/] {w}")
    out.print(f"ok: {result.entries} entries ({result.live_entries} live), {result.outputs} outputs, no problems")


@main.command("publish")
@click.option("--full", is_flag=True, help="Render everything instead of reusing the live build.")
@as_of_option
@workers_option
@click.option("--json", "as_json", is_flag=True, help="Print the purge set as JSON.")
@click.option("--no-purge", is_flag=True, help="Do not purge the configured edges (the caller does).")
@click.option("--hard", is_flag=True, help="Hard-purge API answers too (default: invalidate them: kept for a "
                                            "conditional request, revalidated before they are served).")
@pass_site
def publish_cmd(site: Site, full: bool, as_of: str | None, workers: int | None, as_json: bool,
                no_purge: bool, hard: bool) -> None:
    """Build the published branch and make it live in one atomic step, then purge the edges
    ([edges] in flowcms.toml, and the edge of a running `flowcms up`)."""
    try:
        with site.store.lock():
            result = run_build(site, ref=None, full=full, as_of=_as_of(as_of), workers=workers)
            diff = publish(site.store, result.build_id, diff=result.diff)
    except BuildFailed as exc:
        report_failure(exc, site)
    except PipelineError as exc:
        fail(str(exc))
    acks = [] if no_purge or diff.old == diff.new else purge_edges(site, diff, soft=not hard)
    if not no_purge and diff.old != diff.new:
        write_events(site, diff, rollback=False)
    if as_json:
        info = {"id": result.build_id, "rendered": result.rendered, "reused": result.reused,
                "seconds": result.seconds, "commit": site.store.info(result.build_id).commit}
        sys.stdout.write(json.dumps({**diff.to_json(), "build": info, "edges": acks}) + "\n")
        return
    print_result(result)
    if diff.old == diff.new:
        out.print(f"nothing changed: build {result.build_id[:12]} was already live")
    else:
        print_diff(diff)
        out.print(f"[green]live:[/] {result.build_id}")
        print_acks(acks)


@main.command("rollback")
@click.argument("build_id", required=False)
@pass_site
def rollback_cmd(site: Site, build_id: str | None) -> None:
    """Make an earlier build live again (default: the one before the current) and purge
    the reverse diff at the edges; the old pages keep their old ETags."""
    try:
        with site.store.lock():
            diff = rollback(site.store, build_id)
    except PipelineError as exc:
        fail(str(exc))
    print_diff(diff)
    out.print(f"[green]live:[/] {diff.new}")
    print_acks(purge_edges(site, diff, soft=True))
    write_events(site, diff, rollback=True)


def write_events(site: Site, diff: BuildDiff, *, rollback: bool) -> None:
    """Webhook events into the durable outbox (delivered by `flowcms up`'s dispatcher)."""
    from pipeline.webhooks import Outbox, publish_events

    outbox = Outbox(site.store.root)
    if not outbox.endpoints():
        return
    old = site.store.manifest(diff.old) if diff.old else {}
    summary = {"from": diff.old, "to": diff.new, "added": len(diff.added), "changed": len(diff.changed),
               "removed": len(diff.removed)}
    for event, data in publish_events(old, site.store.manifest(diff.new), diff.added, diff.removed, summary,
                                      rollback=rollback):
        outbox.enqueue(event, data)


def purge_edges(site: Site, diff: BuildDiff, *, soft: bool) -> list[dict[str, object]]:
    """Purge the publish's purge set at every known edge; one acknowledgement per edge."""
    from pipeline.edges import known_edges, purge_all

    edges = known_edges(site.path, site.store)
    purges = purge_set(diff)
    if not edges or not purges:
        return []
    import trio

    acks = trio.run(partial(purge_all, edges, purges, soft=soft))
    return [a.to_json() for a in acks]


def print_acks(acks: list[dict[str, object]]) -> None:
    for ack in acks:
        if ack["ok"]:
            out.print(f"purged at {ack['edge']}: {ack['purged']} objects in {float(ack['seconds']) * 1000:.0f} ms")
        else:
            err.print(f"[red]purge failed at {ack['edge']}:[/] {ack['error']} — the edge may serve stale pages",
                      markup=True)


@main.command("builds")
@click.option("--json", "as_json", is_flag=True)
@pass_site
def builds_cmd(site: Site, as_json: bool) -> None:
    """List builds: id, commit, time, size; the live one is marked."""
    live = site.store.live()
    infos = site.store.list_builds()
    if as_json:
        out.print_json(data=[{**i.__dict__, "live": i.id == live} if hasattr(i, "__dict__") else
                             {k: getattr(i, k) for k in i.__slots__} | {"live": i.id == live}
                             for i in infos])
        return
    from rich.table import Table

    table = Table(box=None, header_style="bold")
    for col in ("", "build", "commit", "ref", "built", "outputs", "size", "entries"):
        table.add_column(col)
    for i in infos:
        built = dt.datetime.fromtimestamp(i.created, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")
        table.add_row("*" if i.id == live else "", i.id, i.commit[:12], i.ref, built,
                      str(i.outputs), f"{i.bytes / 1e6:.1f} MB", f"{i.live_entries}/{i.entries}")
    out.print(table)


@main.command("diff")
@click.argument("old")
@click.argument("new")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable: the purge set.")
@pass_site
def diff_cmd(site: Site, old: str, new: str, as_json: bool) -> None:
    """What changed between two builds: paths and surrogate keys (the purge set)."""
    try:
        d = diff_builds(site.store, site.store.resolve(old), site.store.resolve(new))
    except PipelineError as exc:
        fail(str(exc))
    if as_json:
        sys.stdout.write(json.dumps(d.to_json(), indent=2) + "\n")
        return
    for label, paths in (("+", d.added), ("~", d.changed), ("-", d.removed)):
        for p in paths:
            out.print(f"{label} {p}", markup=False)
    print_diff(d)


@main.command("publishes")
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@pass_site
def publishes_cmd(site: Site, limit: int, as_json: bool) -> None:
    """Recent publishes of `flowcms up` (newest first): trigger, status, timings, purges."""
    from pipeline.publisher import read_records

    records = read_records(site.store, limit)
    if as_json:
        sys.stdout.write(json.dumps(records, indent=2) + "\n")
        return
    if not records:
        out.print("no publishes recorded yet (they are recorded by `flowcms up`)")
        return
    from rich.table import Table

    table = Table(box=None, header_style="bold")
    for col in ("publish", "when", "trigger", "status", "build", "+/~/-", "build ms", "purge ms", "fresh ms"):
        table.add_column(col)

    def ms(value: object) -> str:
        return f"{float(value) * 1000:.0f}" if isinstance(value, (int, float)) else "-"

    for r in records:
        when = dt.datetime.fromtimestamp(float(r["seen"]), dt.UTC).strftime("%Y-%m-%d %H:%M:%S")
        table.add_row(str(r["id"]), when, str(r["trigger"]), str(r["status"]), str(r.get("build") or "")[:12],
                      f"{r['added']}/{r['changed']}/{r['removed']}", ms(r.get("build_s")), ms(r.get("purge_s")),
                      ms(r.get("fresh_s")))
    out.print(table)


@main.group("hook")
def hook_group() -> None:
    """Git hooks that publish on commit (post-commit) or push (post-receive)."""


HOOK_MARK = "# installed by flowcms"


@hook_group.command("install")
@pass_site
def hook_install(site: Site) -> None:
    """Publish every commit to the published branch (in the background; log in .flowcms/hook.log)."""
    from pipeline.watch import git_dir

    repo = git_dir(site.path)
    if repo is None:
        fail(f"{site.path} is not a git repository: hooks need git (a plain folder is watched by `flowcms up`)")
    bare = repo == site.path
    name = "post-receive" if bare else "post-commit"
    hooks = repo / "hooks"
    hooks.mkdir(exist_ok=True)
    path = hooks / name
    if path.exists() and HOOK_MARK not in path.read_text():
        fail(f"{path} exists and is not ours: add this line to it instead:\n  {_hook_command(site)}")
    check = ('while read old new ref; do [ "$ref" = "refs/heads/{b}" ] && run; done' if bare
             else '[ "$(git rev-parse --abbrev-ref HEAD)" = "{b}" ] && run').format(b=site.branch)
    path.write_text(f"#!/bin/sh\n{HOOK_MARK}: publish the {site.branch} branch\n"
                    f"run() {{\n  {_hook_command(site)}\n}}\n{check}\nexit 0\n")
    path.chmod(0o755)
    out.print(f"installed {path}: commits to {site.branch} are published")


@hook_group.command("uninstall")
@pass_site
def hook_uninstall(site: Site) -> None:
    """Remove the hook `flowcms hook install` added."""
    from pipeline.watch import git_dir

    repo = git_dir(site.path)
    removed = [p for p in ((repo / "hooks" / n) for n in ("post-commit", "post-receive")) if repo is not None
               and p.exists() and HOOK_MARK in p.read_text()]
    for path in removed:
        path.unlink()
    out.print(f"removed {', '.join(map(str, removed))}" if removed else "no flowcms hook installed")


def _hook_command(site: Site) -> str:
    log = site.store.root / "hook.log"
    return (f"nohup '{sys.executable}' -m pipeline.cli --site '{site.path}' publish >> '{log}' 2>&1 "
            "< /dev/null &")


@main.group("webhooks")
def webhooks_group() -> None:
    """Webhook endpoints (Standard Webhooks signatures), their deliveries and retries."""


@webhooks_group.command("add")
@click.argument("url")
@click.option("--events", default=",".join(("content.published", "content.unpublished", "build.failed",
                                           "publish.completed", "rollback")), show_default=True,
              help="Comma-separated events to send.")
@pass_site
def webhooks_add(site: Site, url: str, events: str) -> None:
    """Add an endpoint; prints its signing secret (shown once)."""
    from pipeline.webhooks import Outbox, WebhookError

    try:
        endpoint = Outbox(site.store.root).add_endpoint(url, [e.strip() for e in events.split(",") if e.strip()])
    except WebhookError as exc:
        fail(str(exc))
    out.print(f"added {endpoint.id} → {endpoint.url} ({', '.join(endpoint.events)})")
    out.print(f"signing secret (keep it; verify webhook-signature with it): {endpoint.secret}")


@webhooks_group.command("list")
@pass_site
def webhooks_list(site: Site) -> None:
    """The endpoints and their events."""
    from pipeline.webhooks import Outbox

    for endpoint in Outbox(site.store.root).endpoints():
        out.print(f"{endpoint.id}  {endpoint.url}  {', '.join(endpoint.events)}", markup=False)


@webhooks_group.command("remove")
@click.argument("endpoint_id")
@pass_site
def webhooks_remove(site: Site, endpoint_id: str) -> None:
    from pipeline.webhooks import Outbox, WebhookError

    try:
        Outbox(site.store.root).remove_endpoint(endpoint_id)
    except WebhookError as exc:
        fail(str(exc))
    out.print(f"removed {endpoint_id}")


@webhooks_group.command("log")
@click.option("--limit", type=click.IntRange(min=1), default=30, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@pass_site
def webhooks_log(site: Site, limit: int, as_json: bool) -> None:
    """Recent deliveries, newest first: event, endpoint, status, attempts, last result."""
    from pipeline.webhooks import Outbox

    rows = Outbox(site.store.root).log(limit)
    if as_json:
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
        return
    for r in rows:
        out.print(f"{r['id']}  {r['event']:<20} {r['status']:<9} attempts {r['attempts']}  "
                  f"{r['last_result'] or '-'}  {r['url']}", markup=False)


@webhooks_group.command("redeliver")
@click.argument("delivery_id")
@pass_site
def webhooks_redeliver(site: Site, delivery_id: str) -> None:
    """Send a delivery again (its attempts start over)."""
    from pipeline.webhooks import Outbox, WebhookError

    try:
        Outbox(site.store.root).redeliver(delivery_id)
    except WebhookError as exc:
        fail(str(exc))
    out.print(f"{delivery_id} queued again (sent by the dispatcher of `flowcms up`)")


@main.command("gc")
@click.option("--keep", type=click.IntRange(min=0), default=5, show_default=True,
              help="Newest builds to keep (the live build is always kept).")
@pass_site
def gc_cmd(site: Site, keep: int) -> None:
    """Remove old builds and blobs no kept build references."""
    with site.store.lock():
        builds, blobs = site.store.gc(keep)
    out.print(f"removed {builds} builds and {blobs} blobs")


@main.command("init")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
def init_cmd(directory: Path) -> None:
    """Create a new site: a git repository with sample content."""
    from pipeline.scaffold import create_site

    try:
        create_site(directory)
    except PipelineError as exc:
        fail(str(exc))
    out.print(f"created {directory} (git repository, branch main). Next: cd {directory} && flowcms up")


def _serve(site: Site, host: str, port: int, *, answer_cache: bool | None = None) -> None:
    import trio
    from hypercorn.config import Config
    from hypercorn.trio import serve

    from pipeline.origin import create_app, hypercorn_guard

    hypercorn_guard.install()
    config = Config()
    config.bind = [f"{host}:{port}"]
    config.accesslog = None
    config.errorlog = "-"
    app = create_app(site.store, answer_cache=answer_cache)
    live = site.store.live()
    out.print(f"serving build {live[:12] if live else '(none)'} of {site.path} at "
              f"[bold]http://{host}:{port}/[/]  (Ctrl-C stops)")
    async def until_signal() -> None:
        # SIGINT (Ctrl-C) and SIGTERM both stop gracefully: hypercorn finishes in-flight requests
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for _ in signals:
                return

    trio.run(partial(serve, app, config, shutdown_trigger=until_signal))
    out.print("stopped")


NO_ANSWER_CACHE_HELP = ("Compute every API answer (no per-build answer cache; also FLOWCMS_ANSWER_CACHE=0): "
                        "for measuring the uncached path.")


@main.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--no-answer-cache", is_flag=True, help=NO_ANSWER_CACHE_HELP)
@pass_site
def serve_cmd(site: Site, host: str, port: int, no_answer_cache: bool) -> None:
    """Serve the live build (ETag, Cache-Control, Surrogate-Key, 304)."""
    if site.store.live() is None:
        fail("nothing is live yet: run `flowcms publish` first")
    _serve(site, host, port, answer_cache=False if no_answer_cache else None)


@main.command("up")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int,
              help="The site's port: the edge proxy (or the origin itself with --no-edge). 0 picks one.")
@click.option("--origin-port", default=8001, show_default=True, type=int, help="The origin's port (0 picks one).")
@click.option("--no-edge", is_flag=True, help="Serve the origin directly, without edgeproxy in front.")
@click.option("--no-watch", is_flag=True, help="Do not publish when the published branch moves.")
@click.option("--no-answer-cache", is_flag=True, help=NO_ANSWER_CACHE_HELP)
@pass_site
def up_cmd(site: Site, host: str, port: int, origin_port: int, no_edge: bool, no_watch: bool,
           no_answer_cache: bool) -> None:
    """Build and publish the site if it changed, then run the whole stack: origin, edge proxy
    in front (HTTP/1.1 + HTTP/2), and a watcher that publishes every commit to the branch."""
    from pipeline.watch import current_state

    since = current_state(site.path, site.branch)  # what this build sees: the watcher starts from it
    try:
        with site.store.lock():
            result = run_build(site, ref=None, full=False, as_of=None, workers=None)
            diff = publish(site.store, result.build_id, diff=result.diff)
    except BuildFailed as exc:
        report_failure(exc, site)
    except PipelineError as exc:
        fail(str(exc))
    print_result(result)
    if diff.old != diff.new:
        print_diff(diff)
    import trio

    from pipeline.stack import StackError, run_stack

    try:
        trio.run(partial(run_stack, site.path, site.store, branch=site.branch, host=host, port=port,
                         origin_port=origin_port, edge=not no_edge, watch=not no_watch, say=out.print,
                         answer_cache=False if no_answer_cache else None, since=since))
    except* StackError as group:
        for exc in group.exceptions:
            err.print(f"[red]error:[/] {exc}")
        sys.exit(1)
    out.print("stopped")


def entrypoint() -> Any:
    return main()


if __name__ == "__main__":
    main()

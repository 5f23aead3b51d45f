"""`%%step` and `%cellops`: thin IPython adapters over `cellops.steps` (engine, status)."""

from __future__ import annotations

import ast
import io
import os
import shlex
import tokenize
from collections.abc import Callable
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments
from traitlets import Bool, default

from .._text import split_names
from ..errors import CellopsError
from ..steps.engine import StepSpec, run_step
from ..steps.notebook import papermill_parameters
from ..store.session import current_session, ensure_session
from . import drift_magic, registry_magic
from .cell_output import IPythonCellOutput


def _names(text: str | None) -> list[str] | None:
    return None if text is None else split_names(text)


@magics_class
class StepMagics(Magics):
    """Tracked, cached notebook steps. Settings: `%config StepMagics.cache = False`."""

    cache = Bool(
        config=True,
        help="Restore a step whose code and inputs did not change from the cache instead of "
        "running it. False runs every step (each is still tracked). Default from the "
        "CELLOPS_CACHE environment variable (0 turns it off, as `cellops reproduce` does).",
    )
    show_restored = Bool(
        True, config=True, help="Print what a cached step restored, and from which run."
    )

    @default("cache")
    def _cache_default(self) -> bool:
        return os.environ.get("CELLOPS_CACHE", "1") != "0"

    def __init__(self, shell: Any = None, **kwargs: Any):
        super().__init__(shell=shell, **kwargs)
        self._cell_id: str | None = None

    # -- events -------------------------------------------------------------------------------

    def pre_run_cell(self, info: Any) -> None:
        self._cell_id = getattr(info, "cell_id", None)
        self.record_parameters(info.raw_cell or "")

    def record_parameters(self, source: str) -> None:
        """Record Papermill's parameters on the session run, when `source` is its cell."""
        session = current_session()
        if session is not None and session.notebook.runner == "papermill":
            parameters = papermill_parameters(source)
            if parameters:
                session.record_parameters(parameters)

    def post_run_cell(self, result: Any) -> None:
        session = current_session()
        if session is None or session.notebook.runner != "papermill":
            return
        if result.error_in_exec is not None:
            session.failed = True  # the job stops here: its session run ends FAILED
        # Papermill asks the kernel to shut down right after the last cell and SIGTERMs it
        # 2.5 s later (jupyter_client's shutdown_wait_time / 2), before atexit could flush:
        # in a job, nobody waits on the cell's latency, so each cell's records are written now.
        session.tracker.flush()

    # -- %%step -------------------------------------------------------------------------------

    @magic_arguments()
    @argument("name", help="The step's name, unique in the notebook (letters, digits, _ - .).")
    @argument("--inputs", help="Comma-separated variables the step reads (replaces detection).")
    @argument("--outputs", help="Comma-separated variables the step writes (replaces detection).")
    @argument("--params", help="Comma-separated variables to log as params (and key on).")
    @argument("--metrics", help="Comma-separated variables to log as metrics after the cell.")
    @argument(
        "--files-in", dest="files_in",
        help='Comma-separated files or folders it reads; quote a path with spaces: "a b.csv".',
    )  # fmt: skip
    @argument(
        "--files-out", dest="files_out",
        help="Comma-separated files or folders inside the project that it writes.",
    )  # fmt: skip
    @argument("--no-cache", dest="no_cache", action="store_true", help="Run; store nothing.")
    @argument("--force", action="store_true", help="Run even when cached; refresh the cache.")
    @cell_magic
    def step(self, line: str, cell: str) -> Any:
        """Run the cell as a tracked, cached step: one MLflow run under the session run.

        The step's inputs (names the cell reads that exist in the notebook) and outputs (names
        it assigns) are found from the code. If the code, the inputs' values, the declared
        input files and the steps upstream are unchanged since a successful run, the cell is
        not run: its outputs are restored from the cache under `.cellops/`, and what it showed
        (printed text, displays, figures, the last expression's value) is shown again.

        Examples::

            %%step load
            df = make_transactions(n_rows)

            %%step train --metrics f1,auc --params depth
            model = GradientBoostingClassifier(max_depth=depth).fit(X_train, y_train)
            f1, auc = score(model, X_test, y_test)

            %%step features --files-in data/raw.csv --files-out data/features.parquet
            pd.read_csv("data/raw.csv").pipe(add_features).to_parquet("data/features.parquet")

            %%step report --files-out "out/my report.html","out/figures/"

            %%step evaluate --force       # run even if cached
            %%step explore --no-cache     # track, but never cache

        Inside the cell, `cellops.log_metric(...)`, `log_param`, `log_artifact` log to the
        step's run. `%cellops status` shows which steps are fresh, cached or stale.
        """
        __tracebackhide__ = True
        try:
            args = self._parse_step_line(line)
        except (UsageError, CellopsError) as exc:
            raise UsageError(f"{exc}\nusage: {self._usage()}") from None
        transformed = self.shell.transform_cell(cell)
        run, last_expression = self._compile(transformed, cell)
        # IPython shows nothing for a cell ending in `;`; here it sees only the magic's call
        shown = last_expression and not _ends_with_semicolon(transformed)
        spec = StepSpec(
            name=args.name,
            source=transformed,
            raw_source=cell if cell != transformed else None,
            inputs=args.inputs,
            outputs=args.outputs,
            params=args.params or [],
            metrics=args.metrics or [],
            files_in=args.files_in or [],
            files_out=args.files_out or [],
            use_cache=self.cache and not args.no_cache,
            force=args.force,
            cell_id=self._cell_id,
        )
        # No warnings.catch_warnings here: the cell's warnings and filters are a plain cell's.
        output = IPythonCellOutput(self.shell)
        try:
            outcome = run_step(ensure_session(), spec, self.shell.user_ns, run, output=output)
        except CellopsError as exc:
            raise UsageError(str(exc)) from None
        if outcome.cached:
            if self.show_restored:
                print(outcome.message())
            # the code digest ignores a trailing `;`: the entry may hold the value's display
            replayed = outcome.outputs if shown else _without_results(outcome.outputs)
            output.replay(replayed)
            return outcome.value if outcome.has_value and shown else None
        return outcome.value if shown else None

    def _parse_step_line(self, line: str) -> Any:
        """The `%%step` line's flags, split as a shell does (`--files-out "out/my file.csv"`
        is one path, without its quotes), each list split by `split_names`: all before the
        cell runs, so a mistyped line fails at once."""
        try:
            argv = shlex.split(line)
        except ValueError as exc:  # "No closing quotation"
            raise UsageError(
                f"{exc} in the %%step line {line.strip()!r}: close the quote, for example "
                '--files-out "out/my file.csv"'
            ) from None
        args = self.step.parser.parse_args(argv)
        for flag in ("inputs", "outputs", "params", "metrics", "files_in", "files_out"):
            setattr(args, flag, _names(getattr(args, flag)))
        return args

    def _usage(self) -> str:
        return (
            "%%step NAME [--inputs A,B] [--outputs A,B] [--params A,B] [--metrics A,B] "
            "[--files-in PATHS] [--files-out PATHS] [--no-cache] [--force]   (see %%step?)"
        )

    def _compile(self, code: str, raw: str) -> tuple[Callable[[], Any], bool]:
        """Compile now, so a SyntaxError is reported before anything is recorded."""
        filename = self.shell.compile.cache(code, self.shell.execution_count, raw_code=raw)
        tree = ast.parse(code, filename=filename)
        last = None
        if tree.body and isinstance(tree.body[-1], ast.Expr):
            last = ast.Expression(tree.body.pop().value)
        body = compile(tree, filename, "exec")
        expression = compile(last, filename, "eval") if last is not None else None
        namespace = self.shell.user_ns

        def run() -> Any:
            __tracebackhide__ = True
            exec(body, namespace)
            return eval(expression, namespace) if expression is not None else None

        return run, last is not None

    # -- %cellops -----------------------------------------------------------------------------

    @line_magic
    def cellops(self, line: str) -> Any:
        """cellops commands in the notebook.

        Usage::

            %cellops status     # this notebook's steps: fresh, cached, stale, failed, never run
                                # (and the link to their runs in MLflow's UI)
            %cellops store      # where runs are recorded, and how `cellops ui` opens them
            %cellops flush      # wait until every pending write reached the store
            %cellops lineage    # the step graph: input files and params, steps, output files
            %cellops register model --name fraud --sample X_test --metrics f1,auc
                                # a new version of the model, with the alias challenger
            %cellops models [NAME]  # the registry panel: versions, aliases, gate, promote
            %cellops drift REF CUR [--columns a,b] [--engine native|evidently]
                                # per-column drift of CUR against REF (variables, files,
                                # or models:/NAME@champion), and the dataset drift decision
        """
        command = line.strip().split()[0] if line.strip() else ""
        handlers = {
            "status": self._status,
            "store": self._store,
            "flush": self._flush,
            "lineage": self._lineage,
            "register": lambda: registry_magic.register(self.shell, _rest(line)),
            "models": lambda: registry_magic.models(self.shell, _rest(line)),
            "drift": lambda: drift_magic.drift(self.shell, _rest(line)),
        }
        if command not in handlers:
            raise UsageError(
                f"unknown %cellops command {command!r}; use one of: {', '.join(handlers)} "
                "(for example: %cellops status)"
            )
        try:
            return handlers[command]()
        except CellopsError as exc:
            raise UsageError(str(exc)) from None

    def _status(self) -> Any:
        from ..steps.report import status_frame, status_link

        session = ensure_session()
        frame = status_frame(session, self.shell.user_ns)
        print(status_link(session))  # the link to these runs in MLflow's UI, or how to open it
        return frame

    def _store(self) -> None:
        from ..steps.report import store_summary

        print(store_summary(ensure_session().settings))

    def _flush(self) -> None:
        ensure_session().flush_records()  # StoreWriteError names each write that failed
        print("all step records written")

    def _lineage(self) -> Any:
        from IPython.display import SVG

        from ..data.graph import notebook_graph
        from ..steps.report import session_statuses
        from ..widgets.lineage import lineage_svg

        session = ensure_session()
        graph = notebook_graph(session.settings, session.notebook.path, session.notebook_label)
        states = {s.name: s.state for s in session_statuses(session, self.shell.user_ns)}
        return SVG(data=lineage_svg(graph, states))


def _rest(line: str) -> str:
    """The arguments after the %cellops subcommand."""
    return line.strip().partition(" ")[2].strip()


def _ends_with_semicolon(code: str) -> bool:
    """Whether the code's last token is `;` (IPython's rule for a quiet cell)."""
    skip = {tokenize.ENDMARKER, tokenize.NL, tokenize.NEWLINE, tokenize.COMMENT,
            tokenize.INDENT, tokenize.DEDENT}  # fmt: skip
    last = None
    try:
        for token in tokenize.generate_tokens(io.StringIO(code).readline):
            if token.type not in skip:
                last = token
    except (tokenize.TokenError, SyntaxError):
        return False
    return last is not None and last.type == tokenize.OP and last.string == ";"


def _without_results(outputs: list[dict]) -> list[dict]:
    return [o for o in outputs if o.get("output_type") != "execute_result"]

"""The one way Schoolgate fills in a template (block page, problem-report pages, reports, the check
summary, e-mails): Jinja2 over the school's templates folder first, then the package's own copies.
Values in HTML are escaped whatever the template says; an unknown name is an error, not a blank.

A leaf: it imports nothing of Schoolgate, so every layer (the pure policy layer too) may use it.
"""

from __future__ import annotations

import html
import logging
import types
from pathlib import Path

import jinja2
from jinja2.nodes import EvalContext
from markupsafe import Markup

__all__ = ["Page", "environment"]

log = logging.getLogger("schoolgate")

_PACKAGE = "templates"
"""The package's folder of templates (a link to the repository's top-level `templates/`)."""
_MAX_REPORTED = 100
"""Distinct render failures a page logs; past that a broken edit would only repeat itself."""


@jinja2.pass_eval_context
def _escaped(context: EvalContext, value: object) -> object:
    # Quotes escaped as html.escape does (&quot; and &#x27;), the spelling the gateway's pages
    # have always used; markupsafe, which escapes everything else the same, does the rest (and
    # leaves markup a template or Schoolgate marked safe alone). Most values have no quote:
    # checking first keeps a block page's render within a few microseconds of markupsafe's.
    if (context.autoescape and type(value) is str
            and ('"' in value or "'" in value)):
        return Markup(html.escape(value))  # noqa: S704 - html.escape made it safe
    return value


def environment(folder: Path | None, *, within: str | None = None) -> jinja2.Environment:
    """Templates from `folder` (the school's, when given), else the package's copies. `within`
    is a subfolder of the package's templates (`email`) when `folder` holds only those.

    `.html` templates escape every value (search terms and addresses come from pupils and
    strangers); `.txt` ones do not. Built per use, never cached: a school's edit is seen at the
    next report, or at the next reload for the gateway's pages, and rendering a compiled
    template never reads a file (no `auto_reload` stat)."""
    package = jinja2.PackageLoader("schoolgate", f"{_PACKAGE}/{within}" if within else _PACKAGE)
    loaders: list[jinja2.BaseLoader] = [package]
    if folder is not None:
        loaders.insert(0, jinja2.FileSystemLoader(folder))
    return jinja2.Environment(
        loader=jinja2.ChoiceLoader(loaders),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html",),
                                            default_for_string=True, default=False),
        finalize=_escaped,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        auto_reload=False,
    )


class Page:
    """One template, compiled when it is made (at start-up or a reload), so rendering touches no
    file. When the school's copy cannot be read or compiled, or fails while rendering, the
    package's copy is used and the error is logged with its file and line: an edit can change
    what a page says, never whether it is served (the block page must never fail open)."""

    def __init__(self, name: str, folder: Path | None, *, within: str | None = None) -> None:
        self.name = name
        # The package's copy must work: a failure here is Schoolgate's bug, raised at once.
        self._package = environment(None, within=within).get_template(name)
        self._school: jinja2.Template | None = None
        self._reported: set[str] = set()
        if folder is None:
            return
        try:
            school = environment(folder, within=within).get_template(name)
        except jinja2.TemplateSyntaxError as e:
            self._report(f"{e.filename}:{e.lineno}: {e.message}")
        except (jinja2.TemplateError, OSError, UnicodeDecodeError) as e:
            self._report(f"{folder / name}: {e}")
        else:
            if not _same_file(school.filename, self._package.filename):
                self._school = school

    def render(self, **values: object) -> str:
        if self._school is not None:
            try:
                return self._school.render(values)
            except Exception as e:  # noqa: BLE001 - a school's edit must never cost the page
                self._report(f"{_where(e, self._school.filename)}: {type(e).__name__}: {e}")
        return self._package.render(values)

    def _report(self, problem: str) -> None:
        if problem in self._reported or len(self._reported) >= _MAX_REPORTED:
            return
        self._reported.add(problem)
        log.error("template %s: %s; showing Schoolgate's own %s until it is fixed", self.name,
                  problem, self.name)


def _same_file(a: str | None, b: str | None) -> bool:
    return a is not None and b is not None and Path(a).resolve() == Path(b).resolve()


def _where(exc: BaseException, filename: str | None) -> str:
    """`file:line` of the template line that failed. Jinja2 rewrites a render error's traceback
    so its last frames are template lines; an include's syntax error names its own file."""
    if isinstance(exc, jinja2.TemplateSyntaxError) and exc.filename:
        return f"{exc.filename}:{exc.lineno}"
    found = None
    tb: types.TracebackType | None = exc.__traceback__
    while tb is not None:
        code = tb.tb_frame.f_code.co_filename
        if code == filename or (filename is not None and code.endswith((".html", ".txt"))):
            found = f"{code}:{tb.tb_lineno}"
        tb = tb.tb_next
    return found or str(filename)

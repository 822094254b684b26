"""Write a :class:`app.report.ReportModel` as PDF (matplotlib PdfPages) or self-contained HTML (no Qt)."""
from __future__ import annotations

import base64
import html
import io
import os
import textwrap
import time
from pathlib import Path

from app.report import Figure, Paragraph, ReportModel, Table
from imaging.errors import InputError

REPORT_SUFFIXES = (".pdf", ".html", ".htm")
PAGE_IN = (8.27, 11.69)  # A4 portrait, inches
MARGIN = 0.07  # figure fraction
ROW_H = 0.0165  # table row height (figure fraction)
MAX_CELL_CHARS = 400  # longer cells are cut in the PDF (the HTML keeps them whole)
CELL_WRAP = 44  # PDF columns wrap at this many characters


class _PdfFlow:
    """Flows paragraphs, tables (split across pages, header repeated) and images down A4 pages."""

    def __init__(self, pdf, footer: str) -> None:
        self.pdf, self.footer = pdf, footer
        self.fig, self.y, self.pages = None, 0.0, 0

    def new_page(self) -> None:
        from matplotlib.figure import Figure as MplFigure  # no pyplot: safe on a worker thread

        self.close_page()
        self.fig = MplFigure(figsize=PAGE_IN)
        self.pages += 1
        self.y = 1.0 - MARGIN

    def close_page(self) -> None:
        if self.fig is not None:
            self.fig.text(0.5, 0.025, f"{self.footer}  -  page {self.pages}", ha="center", fontsize=7, color="#555")
            self.pdf.savefig(self.fig)
            self.fig = None

    def room(self, h: float) -> None:
        if self.fig is None or self.y - h < MARGIN:
            self.new_page()

    def text(self, text: str, size: float = 9, weight: str = "normal", width: int = 100) -> None:
        for line in textwrap.wrap(text, width) or [""]:
            h = size / 72 / PAGE_IN[1] * 1.45
            self.room(h)
            self.fig.text(MARGIN, self.y - h, line, fontsize=size, weight=weight, va="bottom")
            self.y -= h
        self.y -= 0.006

    def table(self, t: Table) -> None:
        from matplotlib.patches import Rectangle

        cells = [[_clip(c) for c in row] for row in t.rows]
        widths = [min(CELL_WRAP, max([len(h)] + [len(r[i]) for r in cells if i < len(r)])) + 2
                  for i, h in enumerate(t.header)]
        x0, span = MARGIN, 1 - 2 * MARGIN
        points = span * PAGE_IN[0] * 72
        size = max(5.5, min(8.0, points / (0.62 * sum(widths))))
        capacity = int(points / (0.62 * size))  # monospace glyphs are ~0.6 em wide
        while sum(widths) > capacity and max(widths) > 8:
            widths[widths.index(max(widths))] -= 1
        total = sum(widths)
        xs = [x0 + span * sum(widths[:i]) / total for i in range(len(widths))]
        line_h = ROW_H * size / 8.0
        self.text(t.title, 10, "bold")

        def band(h: float, color: str) -> None:
            self.fig.add_artist(Rectangle((x0, self.y - h), span, h, transform=self.fig.transFigure,
                                          color=color, zorder=0))

        def header() -> None:
            band(line_h, "#dde3ea")
            for x, h in zip(xs, t.header):
                self.fig.text(x + 0.003, self.y - line_h * 0.75, h, fontsize=size, weight="bold",
                              family="monospace")
            self.y -= line_h

        self.room(2 * line_h)
        header()
        for k, row in enumerate(cells):
            wrapped = [textwrap.wrap(c, w - 2, break_long_words=True) or [""] for c, w in zip(row, widths)]
            h = line_h * max(len(w) for w in wrapped)
            if self.y - h < MARGIN:
                self.new_page()
                header()
            if k % 2:
                band(h, "#f3f5f7")
            for x, lines in zip(xs, wrapped):
                for j, line in enumerate(lines):
                    self.fig.text(x + 0.003, self.y - line_h * (j + 0.75), line, fontsize=size,
                                  family="monospace")
            self.y -= h
        self.y -= 0.012

    def image(self, f: Figure) -> None:
        import matplotlib.image as mpimg

        img = mpimg.imread(io.BytesIO(f.png), format="png")
        aspect = img.shape[0] / img.shape[1] * PAGE_IN[0] / PAGE_IN[1]
        w = 1 - 2 * MARGIN
        h = w * aspect
        if h > 0.42:
            h, w = 0.42, 0.42 / aspect
        self.room(h + 0.03)
        ax = self.fig.add_axes([(1 - w) / 2, self.y - h, w, h])
        ax.imshow(img)
        ax.axis("off")
        self.y -= h + 0.008
        if f.caption:
            self.text(f.caption, 7.5, width=120)
        self.y -= 0.006


def _clip(text: str) -> str:
    return text if len(text) <= MAX_CELL_CHARS else text[:MAX_CELL_CHARS - 3] + "..."


def write_pdf(model: ReportModel, path: str | os.PathLike) -> int:
    """Write the report as an A4 PDF; returns the number of pages."""
    from matplotlib.backends.backend_pdf import PdfPages

    with PdfPages(str(path), metadata={"Title": model.title, "Creator": "TwinPlan"}) as pdf:
        flow = _PdfFlow(pdf, model.title)
        flow.new_page()
        flow.text(model.title, 16, "bold", width=60)
        flow.text(model.subtitle, 9)
        for i, sec in enumerate(model.sections):
            if i and (isinstance(sec.blocks[0], Figure) or sec.title.startswith(("Scenario:", "Appendix"))):
                flow.new_page()
            flow.y -= 0.01
            flow.text(sec.title, 13, "bold", width=70)
            for b in sec.blocks:
                if isinstance(b, Paragraph):
                    flow.text(b.text)
                elif isinstance(b, Table):
                    flow.table(b)
                else:
                    flow.image(b)
        flow.close_page()
        return flow.pages


_CSS = """body{font-family:sans-serif;max-width:60em;margin:2em auto;color:#222}
h1{font-size:1.6em}h2{border-bottom:2px solid #8aa;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;margin:.5em 0 1.2em;font-size:.85em}caption{text-align:left;font-weight:bold;padding:.3em 0}
th,td{border:1px solid #bbb;padding:.2em .5em;text-align:left;vertical-align:top}th{background:#dde3ea}
tr:nth-child(even) td{background:#f3f5f7}td{font-family:monospace;word-break:break-word}
figure{margin:1em 0}img{max-width:100%}figcaption{font-size:.85em;color:#555}"""


def render_html(model: ReportModel) -> str:
    """The report as one HTML document with images inlined (base64 PNG) and no external resources."""
    e = html.escape
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">', f"<title>{e(model.title)}</title>",
           f"<style>{_CSS}</style></head><body>", f"<h1>{e(model.title)}</h1>", f"<p>{e(model.subtitle)}</p>"]
    for sec in model.sections:
        out.append(f"<section><h2>{e(sec.title)}</h2>")
        for b in sec.blocks:
            if isinstance(b, Paragraph):
                out.append(f"<p>{e(b.text)}</p>")
            elif isinstance(b, Table):
                out.append(f"<table><caption>{e(b.title)}</caption><thead><tr>"
                           + "".join(f"<th>{e(h)}</th>" for h in b.header) + "</tr></thead><tbody>")
                out += ["<tr>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>" for row in b.rows]
                out.append("</tbody></table>")
            else:
                data = base64.b64encode(b.png).decode("ascii")
                out.append(f'<figure><img alt="{e(b.title)}" src="data:image/png;base64,{data}">'
                           + (f"<figcaption>{e(b.caption)}</figcaption>" if b.caption else "") + "</figure>")
        out.append("</section>")
    out.append("</body></html>")
    return "\n".join(out)


def write_report(model: ReportModel, path: str | os.PathLike) -> dict:
    """Write ``model`` to ``path`` (``.pdf`` or ``.html``), atomically.

    Returns
    -------
    dict
        ``file``, ``format``, ``pages`` (PDF; None for HTML), ``bytes``, ``write_seconds``.

    Raises
    ------
    InputError
        Unknown suffix or a folder that cannot be written.
    """
    out = Path(path)
    suffix = out.suffix.lower()
    if suffix not in REPORT_SUFFIXES:
        raise InputError(f"--out {out}: use a .pdf or .html file name")
    if not out.parent.is_dir():
        raise InputError(f"--out {out}: folder {out.parent} does not exist")
    t0 = time.perf_counter()
    tmp = out.with_name(f".{out.name}.partial")
    pages = None
    try:
        if suffix == ".pdf":
            pages = write_pdf(model, tmp)
        else:
            tmp.write_text(render_html(model), encoding="utf-8")
        tmp.replace(out)
    except OSError as exc:
        raise InputError(f"--out {out}: cannot write the report ({exc.strerror or exc})") from exc
    finally:
        tmp.unlink(missing_ok=True)
    return {"file": str(out), "format": "pdf" if suffix == ".pdf" else "html", "pages": pages,
            "bytes": out.stat().st_size, "write_seconds": round(time.perf_counter() - t0, 3)}

"""`make report EXPERIMENT=name`: run the analysis notebooks headless (papermill) on one sweep and write
reports/<experiment>/: the executed notebooks, one HTML page each, index.html, figures/*.png and tables/*.csv.

Usage: python -m analysis.report EXPERIMENT [--tracking-uri URI] [--output-dir DIR] [--notebooks a b ...]
"""

from __future__ import annotations

import argparse
import base64
import html
import re
import sys
from pathlib import Path

import nbformat

from seedcore.record import REPO_ROOT, default_tracking_uri

NOTEBOOK_DIR = Path(__file__).resolve().parent / "notebooks"
FIRST = "overview"
"""The first page for every trainer: index.html shows it under the links to the others."""
NOTEBOOKS = {
    "neuralgpu": [FIRST, "nondeterminism", "big_models_curriculum", "failure_modes"],
    "rl": [FIRST, "nondeterminism", "rl_tasks"],
}
"""Notebooks run for a sweep of each trainer (by the trainer tag of its runs)."""


def pick_notebooks(experiment: str, tracking_uri: str) -> list[str]:
    """The notebooks for the experiment's trainer(s), in order, without repeats."""
    from analysis.load import load_trials

    trials = load_trials(experiment, tracking_uri)
    trainers = sorted(set(trials["trainer"])) if len(trials) else ["neuralgpu"]
    names = [name for trainer in trainers for name in NOTEBOOKS.get(trainer, NOTEBOOKS["neuralgpu"])]
    return list(dict.fromkeys(names))


def run_report(
    experiment: str, tracking_uri: str, output_dir: str | Path, notebooks: list[str] | None = None
) -> list[Path]:
    """Execute each notebook with parameters (tracking_uri, experiment, output_dir), write <name>.ipynb and
    <name>.html into output_dir, then index.html; returns the HTML pages. A failing notebook still gets its
    page (papermill saves the notebook up to the failing cell) and the error is raised after the others ran."""
    import papermill

    output_dir = Path(output_dir).resolve()
    output_dir.mkdir(parents=True, exist_ok=True)
    notebooks = notebooks or pick_notebooks(experiment, tracking_uri)
    pages, failures, first = [], [], None
    for name in notebooks:
        source = NOTEBOOK_DIR / f"{name}.ipynb"
        if not source.is_file():
            known = ", ".join(sorted(p.stem for p in NOTEBOOK_DIR.glob("*.ipynb")))
            raise ValueError(f"no notebook {name!r} in {NOTEBOOK_DIR}; notebooks: {known}")
        executed = output_dir / f"{name}.ipynb"
        print(f"[report] {name}: running on experiment {experiment!r}", file=sys.stderr, flush=True)
        try:
            papermill.execute_notebook(
                str(source),
                str(executed),
                parameters={"tracking_uri": tracking_uri, "experiment": experiment, "output_dir": str(output_dir)},
                kernel_name="python3",
                cwd=str(REPO_ROOT),
                progress_bar=False,
            )
        except Exception as exc:  # noqa: BLE001  (papermill wraps the cell's error; report it after the rest)
            failures.append(f"{name}: {str(exc).strip().splitlines()[-1] if str(exc).strip() else exc!r}")
        if executed.is_file():
            notebook = nbformat.read(executed, as_version=4)
            page = output_dir / f"{name}.html"
            page.write_text(notebook_html(notebook, f"{experiment}: {name}"))
            pages.append(page)
            if name == FIRST:
                first = notebook_body(notebook, code=False)
    write_index(output_dir, experiment, pages, first)
    if failures:
        raise RuntimeError("notebooks failed (their pages show the failing cell): " + "; ".join(failures))
    return pages


def write_index(output_dir: Path, experiment: str, pages: list[Path], first: str | None = None) -> Path:
    """index.html: links to every page, then the first page's content (`first`, its HTML body: what a reader
    sees on opening the report), then the other pages' figures."""
    figures = sorted(f for f in (output_dir / "figures").glob("*.png") if not f.stem.startswith(f"{FIRST}_"))
    items = "".join(f'<li><a href="{p.name}">{html.escape(p.stem)}</a></li>' for p in pages)
    images = "".join(
        f'<figure><img src="figures/{f.name}" width="520"><figcaption>{html.escape(f.stem)}</figcaption></figure>'
        for f in figures
    )
    gallery = f"<h2>Figures of the other pages</h2>{images}" if first and images else images
    index = output_dir / "index.html"
    body = f"<h1>Report: {html.escape(experiment)}</h1><p>Pages:</p><ul>{items}</ul>{first or ''}{gallery}"
    index.write_text(_page(f"Report: {experiment}", body))
    return index


# --- notebook -> HTML (nbconvert is not a dependency: the subset the notebooks produce is rendered here) -------
def notebook_html(notebook: nbformat.NotebookNode, title: str) -> str:
    """One self-contained page: markdown cells, code (collapsed), and outputs (text, HTML tables, PNG inline)."""
    return _page(title, notebook_body(notebook))


def notebook_body(notebook: nbformat.NotebookNode, code: bool = True) -> str:
    """A notebook's cells as HTML: markdown, then each code cell (collapsed; left out without `code`) and its
    outputs. Parameters show without machine paths (parameters_text)."""
    parts = []
    for cell in notebook.cells:
        if cell.cell_type == "markdown":
            parts.append(markdown_html(cell.source))
        elif cell.cell_type == "code":
            if "parameters" in cell.metadata.get("tags", []) or "injected-parameters" in cell.metadata.get("tags", []):
                if code:
                    text = html.escape(parameters_text(cell.source))
                    parts.append(f"<details><summary>parameters</summary><pre>{text}</pre></details>")
                continue
            if code and cell.source.strip():
                parts.append(f"<details><summary>code</summary><pre>{html.escape(cell.source)}</pre></details>")
            parts.extend(_output_html(output) for output in cell.get("outputs", []))
    return "\n".join(parts)


def parameters_text(source: str) -> str:
    """A parameters cell with each absolute path in a string cut to its last part ('sqlite:////home/me/runs/
    mlflow.db' -> 'sqlite:///.../mlflow.db'): a report is shared, the folders of the machine that made it are not
    part of it (the report's command line names the store)."""
    return re.sub(r"""(['"])((?:sqlite|file):///?)?/[^'"]*/([^/'"]+)\1""", r"\1\2.../\3\1", source)


def _output_html(output: nbformat.NotebookNode) -> str:
    if output.output_type == "stream":
        return f'<pre class="out">{html.escape(output.text)}</pre>'
    if output.output_type == "error":
        trace = re.sub(r"\x1b\[[0-9;]*m", "", "\n".join(output.traceback))
        return f'<pre class="error">{html.escape(trace)}</pre>'
    data = output.get("data", {})
    if "image/png" in data:
        png = data["image/png"]
        png = png if isinstance(png, str) else base64.b64encode(png).decode()
        return f'<img src="data:image/png;base64,{png.strip()}">'
    if "text/html" in data:
        return f'<div class="html">{data["text/html"]}</div>'
    if "text/markdown" in data:
        return markdown_html(data["text/markdown"])
    if "text/plain" in data:
        return f'<pre class="out">{html.escape(data["text/plain"])}</pre>'
    return ""


def markdown_html(text: str) -> str:
    """Headings, bullet lists, paragraphs, `code`, **bold** and *italics*: the markdown the notebooks use. The
    lines of a paragraph (or of a list item) are one paragraph, as in markdown."""
    blocks, items, lines = [], [], []

    def inline(line: str) -> str:
        line = html.escape(line)
        line = re.sub(r"`([^`]+)`", r"<code>\1</code>", line)
        line = re.sub(r"\*\*([^*]+)\*\*", r"<b>\1</b>", line)
        return re.sub(r"(?<![\w*])\*([^*\s][^*]*)\*(?![\w*])", r"<i>\1</i>", line)

    def flush() -> None:
        if lines:
            blocks.append(f"<p>{' '.join(lines)}</p>")
            lines.clear()
        if items:
            blocks.append("<ul>" + "".join(f"<li>{i}</li>" for i in items) + "</ul>")
            items.clear()

    for paragraph in re.split(r"\n\s*\n", text.strip()):
        for line in paragraph.splitlines():
            heading = re.match(r"^(#{1,6})\s+(.*)", line)
            if heading:
                flush()
                level = len(heading.group(1))
                blocks.append(f"<h{level}>{inline(heading.group(2))}</h{level}>")
            elif re.match(r"^\s*[-*]\s+", line):
                if lines:
                    flush()
                items.append(inline(re.sub(r"^\s*[-*]\s+", "", line)))
            elif items:
                items[-1] += " " + inline(line.strip())
            else:
                lines.append(inline(line.strip()))
        flush()
    return "\n".join(blocks)


def _page(title: str, body: str) -> str:
    style = (
        "body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
        "pre{background:#f6f6f6;padding:.5em;overflow-x:auto;font-size:12px}"
        "pre.error{background:#fee}table{border-collapse:collapse;font-size:12px}"
        "td,th{border:1px solid #ccc;padding:2px 6px}img{max-width:100%}summary{color:#888;font-size:12px}"
        "table.readable{font-size:13px;margin:.5em 0 1em}table.readable td,table.readable th{text-align:right}"
        "table.readable th{background:#f3f3f3}"
    )
    return (
        f'<!DOCTYPE html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{style}</style></head><body>\n{body}\n</body></html>\n"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m analysis.report", description=__doc__.splitlines()[0])
    parser.add_argument("experiment", help="the sweep name (its MLflow experiment)")
    parser.add_argument("--tracking-uri", default=None, help="MLflow URI (default: $MLFLOW_TRACKING_URI or runs/)")
    parser.add_argument("--output-dir", default=None, help="default: <repo>/reports/<experiment>")
    parser.add_argument("--notebooks", nargs="+", default=None, help=f"default by trainer: {NOTEBOOKS}")
    args = parser.parse_args(argv)
    uri = args.tracking_uri or default_tracking_uri()
    output_dir = Path(args.output_dir or REPO_ROOT / "reports" / args.experiment).resolve()
    try:
        pages = run_report(args.experiment, uri, output_dir, args.notebooks)
    except (ValueError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"report: {output_dir / 'index.html'} ({len(pages)} notebooks, figures in {output_dir / 'figures'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The report as a list of blocks, rendered twice: Markdown (figures linked) and one self-contained
HTML page (figures embedded as base64 ``data:`` URIs, styles inline, no script, nothing fetched).
"""

import base64
import html
import os
from dataclasses import dataclass

import pandas as pd


@dataclass
class Heading:
    text: str
    level: int = 2


@dataclass
class Text:
    text: str


@dataclass
class Bullets:
    items: list


@dataclass
class Table:
    frame: pd.DataFrame
    index: bool = False


@dataclass
class Figure:
    file: str     # a PNG in the report's folder
    caption: str


STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1300px; margin: 2em auto; padding: 0 1em; color: #222; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
th { background: #f2f2f2; }
tr:nth-child(even) td { background: #fafafa; }
figure { margin: 1em 0 2em; }
img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-size: 0.9em; color: #555; }
code { background: #f2f2f2; padding: 0 0.2em; }
"""


def markdown(blocks):
    """The report in Markdown; figures link to the PNG files next to it."""
    parts = []
    for block in blocks:
        if isinstance(block, Heading):
            parts.append(f"{'#' * block.level} {block.text}")
        elif isinstance(block, Text):
            parts.append(block.text)
        elif isinstance(block, Bullets):
            parts.append("\n".join(f"- {item}" for item in block.items))
        elif isinstance(block, Table):
            parts.append(block.frame.to_markdown(index=block.index))
        else:
            parts.append(f"![{block.file}]({block.file})\n\n*{block.caption}*")
    return "\n\n".join(parts) + "\n"


def _inline(text):
    """HTML-escaped text with Markdown's `code` spans kept as <code>."""
    pieces = html.escape(text).split("`")
    return "".join(f"<code>{piece}</code>" if i % 2 else piece for i, piece in enumerate(pieces))


def _image(directory, name):
    with open(os.path.join(directory, name), "rb") as stream:
        return "data:image/png;base64," + base64.b64encode(stream.read()).decode("ascii")


def page(blocks, title, directory):
    """The report as one HTML page that needs no other file: the figures in ``directory`` are embedded."""
    parts = []
    for block in blocks:
        if isinstance(block, Heading):
            parts.append(f"<h{block.level}>{_inline(block.text)}</h{block.level}>")
        elif isinstance(block, Text):
            parts.append(f"<p>{_inline(block.text)}</p>")
        elif isinstance(block, Bullets):
            parts.append("<ul>" + "".join(f"<li>{_inline(item)}</li>" for item in block.items) + "</ul>")
        elif isinstance(block, Table):
            parts.append(block.frame.to_html(index=block.index, border=0, escape=True))
        else:
            parts.append(f'<figure><img src="{_image(directory, block.file)}" alt="{html.escape(block.caption)}">'
                         f"<figcaption>{_inline(block.caption)}</figcaption></figure>")
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{STYLE}</style></head>\n<body>\n" + "\n".join(parts) + "\n</body></html>\n")

"""Explanations as one self-contained HTML page (`textclf-explain output=report.html`, `textclf-eval`'s
misclassified.html): each text with its tokens coloured by the sign and strength of their attribution, the
prediction and its probabilities, a legend. No CDN, no IPython, no external file: the CSS and the few lines
of script are inline, and the page still reads with scripts off (all texts shown). With scripts, 50 texts a
page and a filter box keep 1,000 texts readable. Written text by text, so memory stays bounded."""

from __future__ import annotations

import html
from typing import Any, TextIO

PER_PAGE = 50
POSITIVE, NEGATIVE = "22,163,74", "220,38,38"  # green towards the target, red against it

STYLE = f"""
body{{font:15px/1.55 system-ui,sans-serif;margin:0 auto;max-width:60rem;padding:1rem 1.5rem;color:#1f2328}}
h1{{font-size:1.3rem;margin:.2rem 0}} .meta{{color:#57606a;font-size:.85rem}}
.legend{{display:flex;gap:1rem;align-items:center;margin:.6rem 0;font-size:.85rem;flex-wrap:wrap}}
.scale{{width:12rem;height:.9rem;border-radius:3px;
 background:linear-gradient(90deg,rgb({NEGATIVE}),#fff,rgb({POSITIVE}))}}
nav{{display:flex;gap:.5rem;align-items:center;margin:.6rem 0;position:sticky;top:0;background:#fff;padding:.3rem 0}}
nav input{{flex:1;padding:.3rem}}
article{{border:1px solid #d0d7de;border-radius:6px;margin:.7rem 0;padding:.5rem .8rem}}
article header{{font-size:.85rem;color:#57606a;display:flex;gap:.8rem;flex-wrap:wrap}}
article header b{{color:#1f2328}} .target{{margin-top:.35rem}} .target>span{{font-size:.8rem;color:#57606a}}
p.tokens{{margin:.15rem 0;white-space:pre-wrap}} p.tokens i{{font-size:.75rem;color:#8c959f;font-style:normal}}
mark{{border-radius:2px;padding:0 1px;color:inherit}}
mark.p{{background:rgba({POSITIVE},var(--a))}} mark.n{{background:rgba({NEGATIVE},var(--a))}}
"""

SCRIPT = f"""
const all=[...document.querySelectorAll('article')],per={PER_PAGE};let page=0,shown=all;
const box=document.getElementById('filter'),where=document.getElementById('where');
function render(){{const pages=Math.max(1,Math.ceil(shown.length/per));page=Math.min(page,pages-1);
 all.forEach(a=>a.hidden=true);shown.slice(page*per,(page+1)*per).forEach(a=>a.hidden=false);
 where.textContent=`page ${{page+1}} of ${{pages}} (${{shown.length}} texts)`;}}
document.getElementById('prev').onclick=()=>{{page=Math.max(0,page-1);render();}};
document.getElementById('next').onclick=()=>{{page+=1;render();}};
box.oninput=()=>{{const q=box.value.toLowerCase();shown=all.filter(a=>a.textContent.toLowerCase().includes(q));
 page=0;render();}};
document.querySelector('nav').hidden=false;render();
"""


def highlighted(text: str, spans: list[tuple[int, int, float]], largest: float) -> str:
    """`text` escaped, each token span in a <mark> whose colour says the sign and whose opacity says the
    size of its attribution (relative to the text's largest); the value shows on hover."""
    out, at = [], 0
    for start, end, value in sorted(spans):
        if start < at or end <= start:  # a token without characters of its own
            continue
        out.append(html.escape(text[at:start]))
        strength = min(abs(value) / largest, 1.0) if largest > 0 else 0.0
        kind = "p" if value >= 0 else "n"
        piece = html.escape(text[start:end])
        out.append(f'<mark class="{kind}" style="--a:{0.08 + 0.8 * strength:.2f}" title="{value:+.4g}">{piece}</mark>')
        at = end
    out.append(html.escape(text[at:]))
    return "".join(out)


def targets_of(record: dict[str, Any]) -> list[tuple[str, list[float], Any]]:
    """(target, attributions, completeness delta) for each target a record explains."""
    if isinstance(record["target"], list):
        return [(t, record["attributions"][t], record["completeness_delta"][t]) for t in record["target"]]
    return [(record["target"], record["attributions"], record["completeness_delta"])]


def prediction_of(record: dict[str, Any]) -> str:
    if "score" in record:
        return f"score <b>{record['score']:.4g}</b>"
    label = record["label"]
    label = ", ".join(label) or "(no label)" if isinstance(label, list) else label
    ranked = sorted(record["probabilities"].items(), key=lambda item: -item[1])[:5]
    probabilities = " · ".join(f"{html.escape(name)} {p:.3f}" for name, p in ranked)
    return f"predicted <b>{html.escape(label)}</b> <span>{probabilities}</span>"


def article(number: int, record: dict[str, Any], notes: dict[str, str]) -> str:
    """One text: its header (number, prediction, probabilities, any `notes` such as the true label) and,
    for each target, the text (both texts of a pair) with coloured tokens."""
    head = [f"<span>#{number}</span>", prediction_of(record)]
    head += [f"<span>{html.escape(key)} <b>{html.escape(value)}</b></span>" for key, value in notes.items()]
    parts = [f'<article id="t{number}"><header>{"".join(head)}</header>']
    segments = record.get("segment") or [0] * len(record["tokens"])
    texts = [record["text"]] + ([record["text_pair"]] if "text_pair" in record else [])
    for target, attributions, delta in targets_of(record):
        largest = max((abs(value) for value in attributions), default=0.0)
        detail = f" (completeness delta {delta:+.2g})" if delta is not None else ""
        parts.append(f'<div class="target"><span>towards {html.escape(str(target))}{detail}</span>')
        for segment, text in enumerate(texts):
            spans = [(s, e, v) for (s, e), v, g in zip(record["offsets"], attributions, segments) if g == segment]
            label = f"<i>{'text' if segment == 0 else 'text pair'}: </i>" if len(texts) > 1 else ""
            parts.append(f'<p class="tokens">{label}{highlighted(text, spans, largest)}</p>')
        parts.append("</div>")
    return "".join(parts) + "</article>\n"


class HtmlReport:
    """The page, written to `handle` as texts come: `write` each chunk of records, then `close`."""

    def __init__(self, handle: TextIO, title: str, subtitle: str = "") -> None:
        self.handle, self.count = handle, 0
        handle.write(
            f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f'<meta name="viewport" content="width=device-width,initial-scale=1"><style>{STYLE}</style></head><body>'
            f'<h1>{html.escape(title)}</h1><div class="meta">{html.escape(subtitle)}</div>'
            '<div class="legend"><span>against the target</span><span class="scale"></span><span>towards it</span>'
            "<span>· opacity: the token's share of the text's largest attribution; hover a token for its value"
            "</span></div>"
            '<nav hidden><button id="prev">&larr; previous</button><span id="where"></span>'
            '<button id="next">next &rarr;</button><input id="filter" placeholder="filter texts"></nav>\n'
        )

    def write(self, records: list[dict[str, Any]], notes: list[dict[str, str]] | None = None) -> None:
        for index, record in enumerate(records):
            self.count += 1
            self.handle.write(article(self.count, record, notes[index] if notes else {}))

    def close(self) -> None:
        self.handle.write(f"<script>{SCRIPT}</script></body></html>\n")

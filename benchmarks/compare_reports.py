"""Compare two nvila-bench HTML reports of the same records: every table's rows (cell texts) and every chart
(matplotlib's SVG, generated ids stripped), e.g. a `make run` report rendered before and after a change.

    python benchmarks/compare_reports.py BEFORE.html AFTER.html     # exit 1 when a table or chart was lost

Tables are compared as a multiset over the whole page (a section may move or be renamed); a table only in one
report is listed with its section, and a changed table (same header, other rows) is shown row by row.
"""

import collections
import difflib
import re
import sys
from html.parser import HTMLParser


class Tables(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.tables, self.svgs = [], []  # (section, rows), (section, normalised svg)
        self.section, self.stack, self.cell, self.svg_depth = None, [], None, 0
        self.svg_text = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if self.svg_depth:
            self.svg_text.append(f"<{tag} {sorted((k, v) for k, v in attrs.items() if k not in ('id',))}>")
            if tag == "svg":
                self.svg_depth += 1
            return
        if tag == "svg":
            self.svg_depth, self.svg_text = 1, []
        elif tag == "section":
            self.section = attrs.get("id")
        elif tag == "table":
            self.stack.append([])
        elif tag == "tr" and self.stack:
            self.stack[-1].append([])
        elif tag in ("td", "th") and self.stack:
            self.cell = []
        elif tag == "br" and self.cell is not None:
            self.cell.append(" ")

    def handle_endtag(self, tag):
        if self.svg_depth:
            if tag == "svg":
                self.svg_depth -= 1
                if not self.svg_depth:
                    self.svgs.append((self.section, norm_svg("".join(self.svg_text))))
                    return
            self.svg_text.append(f"</{tag}>")
            return
        if tag in ("td", "th") and self.cell is not None and self.stack:
            self.stack[-1][-1].append(" ".join("".join(self.cell).split()))
            self.cell = None
        elif tag == "table" and self.stack:
            self.tables.append((self.section, tuple(tuple(r) for r in self.stack.pop())))

    def handle_data(self, data):
        if self.svg_depth:
            self.svg_text.append(data)
        elif self.cell is not None:
            self.cell.append(data)


def norm_svg(text):
    text = re.sub(r"#[0-9a-z]{10,}|url\(#[^)]*\)|[a-z0-9]{12,}", "", text)  # matplotlib's generated ids
    return re.sub(r"<dc:date>.*?</dc:date>|\s+", " ", text)


def parse(path):
    p = Tables()
    p.feed(open(path).read())
    return p


def main(before, after):
    b, a = parse(before), parse(after)
    bt = collections.Counter(rows for _, rows in b.tables)
    at = collections.Counter(rows for _, rows in a.tables)
    where_b = {rows: s for s, rows in b.tables}
    where_a = {rows: s for s, rows in a.tables}
    only_b, only_a = bt - at, at - bt
    print(f"tables: before {len(b.tables)}, after {len(a.tables)}; equal {sum((bt & at).values())}")
    print(f"rows: before {sum(len(r) for _, r in b.tables)}, after {sum(len(r) for _, r in a.tables)}")
    moved = collections.Counter((where_b[r], where_a[r]) for r in (bt & at) if where_b[r] != where_a[r])
    for (s0, s1), n in sorted(moved.items()):
        print(f"  moved: {n} table(s) from section {s0} to {s1}")
    for rows in only_a:
        print(f"  only after: section {where_a[rows]}: {len(rows)} row(s); header {rows[0] if rows else ()}")
    for rows in only_b:
        print(f"  only before: section {where_b[rows]}: {len(rows)} row(s); header {rows[0] if rows else ()}")
        match = next((r for r in only_a if r and rows and r[0] == rows[0]), None)
        if match:
            for line in difflib.unified_diff([str(x) for x in rows], [str(x) for x in match], lineterm="", n=0):
                print("     ", line[:300])
    bs, as_ = collections.Counter(s for _, s in b.svgs), collections.Counter(s for _, s in a.svgs)
    print(f"charts: before {len(b.svgs)}, after {len(a.svgs)}; equal {sum((bs & as_).values())}")
    for s, n in (bs - as_).items():
        print(f"  chart only before ({n}): section {dict((v, k) for k, v in b.svgs)[s]}")
    for s, n in (as_ - bs).items():
        print(f"  chart only after ({n}): section {dict((v, k) for k, v in a.svgs)[s]}")
    return 0 if not only_b and not (bs - as_) else 1


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))

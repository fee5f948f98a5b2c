"""The words of the committed notebooks and of the README's "What we found" against their verdict CSVs.

A notebook's verdicts are decided once, in code, and written to ``figures/verdicts*.csv``; its words are typed
by hand (markdown cells) or printed by code (the verdict tables it displays, the bullets it generates). This
test reads the committed JSON and CSVs only (no execution) and fails where the two disagree:

- **displayed tables**: every row of a displayed verdict table (an HTML table with a ``decision`` column)
  names its claim (``H2a: BatchNorm widens ...``) and a decision, which must be that claim's decision in
  the CSV. One exception, by design: a table that holds only part of a declared family (Holm then counts
  the family's missing claims as p = 1, so its decision can be more cautious than the CSV's) may differ,
  but only when the markdown cell right before it names the claim and says that the table is shown
  :data:`PARTIAL` (so no reader takes it for the decision);
- **generated bullets** (``- **H1a** claim (budget, seeds ...): ...; raw: *x*, ...: **y**``): the raw word
  must be the CSV's raw verdict and the bold one its adjusted decision;
- **hand-written sentences**: a claim name (``H1a`` ... ``H3b``) and a verdict word in the same sentence
  (the first word after the name, else the last before it) must agree with the CSV: with the adjusted
  decision, or with the raw verdict when the word follows "raw"; a sentence that names a norm type
  ("BatchNorm", "without normalization") or "fixed" is checked against those rows only.

The notebook's CSV is the one its code logs (``log_table(..., "verdicts_02")``); the README's "What we found"
is checked against ``figures/verdicts.csv``, the whole study's table.
"""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest

from lib.study.verdicts import WITHHELD, decision_words

ROOT = Path(__file__).resolve().parent.parent
FIGURES = ROOT / "figures"
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
PARTIAL = "before its family is complete"
# longest first, so "described, not decided" is not read as "not decided"
WORDS = ("described, not decided", "budget too short to decide", "not decided: tuning range", "not decided: budget",
         "not decided", "not shown", "inconclusive", "contradicted", "supported")  # fmt: skip
WORD = re.compile(r"\b(" + "|".join(re.escape(w) for w in WORDS) + r")\b", re.IGNORECASE)
NAME = re.compile(r"\bH\d[a-z]\b")
LOGGED = re.compile(r"log_table\(\s*\w+\s*,\s*\"(verdicts\w*)\"")
BATCH = re.compile(r"batchnorm|norm=batch", re.IGNORECASE)
NONE = re.compile(r"without normali[sz]ation|no normali[sz]ation|norm=none|plain CNN", re.IGNORECASE)


def _csv(name: str) -> pd.DataFrame:
    table = pd.read_csv(FIGURES / f"{name}.csv", keep_default_na=False, na_values=[""])
    return table.assign(key=table["hypothesis"] + ": " + table["claim"])


def _cells(path: Path) -> list[dict]:
    return json.loads(path.read_text(encoding="utf-8"))["cells"]


def _text(cell: dict) -> str:
    return "".join(cell["source"])


def _logged_csv(cells: list[dict]) -> str | None:
    code = "\n".join(_text(c) for c in cells if c["cell_type"] == "code")
    found = LOGGED.search(code)
    return found.group(1) if found else None


def _same(word: str, decided: object) -> bool:
    """Whether a word of the text says the CSV's decision (or raw verdict) ``decided``."""
    word, csv_word = decision_words(word.lower()), decision_words(decided)
    if word == "not adjusted":  # the bare "not decided": any withheld decision
        return csv_word in WITHHELD
    return word == csv_word


# --- the displayed verdict tables


class _Tables(HTMLParser):
    """The rows of every HTML table in an output, as lists of cell texts."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[list[list[str]]] = []
        self.row: list[str] | None = None
        self.cell: str | None = None

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.row = []
        elif tag in ("td", "th"):
            self.cell = ""

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self.row is not None and self.cell is not None:
            self.row.append(self.cell.strip())
            self.cell = None
        elif tag == "tr" and self.row is not None and self.tables:
            self.tables[-1].append(self.row)
            self.row = None

    def handle_data(self, data: str) -> None:
        if self.cell is not None:
            self.cell += data


def displayed_tables(cell: dict) -> list[pd.DataFrame]:
    """The verdict tables a code cell displayed: columns ``claim``, ``effect`` and ``decision``."""
    found = []
    for output in cell.get("outputs", []):
        html = output.get("data", {}).get("text/html")
        if not html:
            continue
        parser = _Tables()
        parser.feed("".join(html))
        for rows in parser.tables:
            if rows and {"claim", "decision"} <= set(rows[0]):
                found.append(pd.DataFrame([r[1:] for r in rows[1:]], columns=rows[0][1:]))
    return found


def _match(table: pd.DataFrame, key: str, effect: str | None) -> pd.DataFrame:
    rows = table[table["key"] == key]
    if effect is not None and len(rows) > 1:  # the same claim at two budgets (05): the displayed effect says which
        same = rows[[f"{e:+.2f} {u}" == effect for e, u in zip(rows["effect"], rows["unit"], strict=True)]]
        rows = same if len(same) else rows
    return rows


def _lookup(csvs: list[pd.DataFrame], key: str, effect: str | None) -> pd.DataFrame | None:
    """The rows of the first CSV (the notebook's own first) that hold this claim; ``None`` if none does."""
    for table in csvs:
        rows = _match(table, key, effect)
        if len(rows):
            return rows
    return None


def _family_size(rows: pd.DataFrame) -> int:
    sizes = rows["adjusted_over"].str.extract(r"whole family \((\d+) claims\)")[0].dropna()
    return int(sizes.iloc[0]) if len(sizes) else 0


def table_disagreements(cells: list[dict], csvs: list[pd.DataFrame]) -> tuple[list[str], int]:
    """Every displayed row whose decision differs from the CSV's (unless shown as a partial family and said so)."""
    wrong, checked = [], 0
    for index, cell in enumerate(cells):
        before = _text(cells[index - 1]) if index and cells[index - 1]["cell_type"] == "markdown" else ""
        for shown in displayed_tables(cell):
            matched = [(row, _lookup(csvs, row["claim"], row.get("effect"))) for _, row in shown.iterrows()]
            for row, rows in matched:
                if rows is None:
                    continue
                checked += 1
                if all(_same(row["decision"], d) for d in rows["decision"]):
                    continue
                family = rows["family"].iloc[0]
                in_table = sum(1 for _, r in matched if r is not None and r["family"].iloc[0] == family)
                name = row["claim"].split(":", 1)[0]
                if in_table < _family_size(rows) and name in before and PARTIAL in before:
                    continue
                wrong.append(f"cell {index}: {row['claim']!r} shows {row['decision']!r}, the CSV decides "
                             f"{decision_words(rows['decision'].iloc[0])!r}")  # fmt: skip
    return wrong, checked


# --- the generated bullets and the hand-written sentences


def bullet_disagreements(text: str, table: pd.DataFrame, where: str) -> tuple[list[str], int]:
    """Generated bullets (``- **H1a** claim (budget, n seeds ...): ...**decision**``) against their rows."""
    wrong, checked = [], 0
    starts = "- **" + table["hypothesis"] + "** " + table["claim"] + " ("
    for line in text.splitlines():
        if not line.startswith("- **"):
            continue
        rows = table[[line.startswith(start) for start in starts]]
        if len(rows) > 1:  # the same claim at two budgets: the bullet names its budget and seeds
            rows = rows[[f"({b}, {n} seeds" in line for b, n in zip(rows["budget"], rows["n_seeds"], strict=True)]]
        if rows.empty:
            continue
        row, checked = rows.iloc[0], checked + 1
        raw = re.search(r"raw: \*([^*]+)\*", line)
        bold = [w for w in re.findall(r"\*\*([^*]+)\*\*", line.split(" — ")[0]) if WORD.fullmatch(w)]
        if raw and not _same(raw.group(1), row["verdict"]):
            wrong.append(f"{where}: {row['key']!r} raw {raw.group(1)!r}, the CSV's raw verdict {row['verdict']!r}")
        if not bold or not _same(bold[-1], row["decision"]):
            wrong.append(f"{where}: {row['key']!r} reads {bold[-1:]!r}, the CSV decides {row['decision']!r}")
    return wrong, checked


def sentences(text: str) -> list[str]:
    """A text cut at sentence ends, semicolons and list items (one claim's words rarely cross them)."""
    text = re.sub(r"\n\s*(?=[-*]\s|\d+\.\s)", "\n\n", text)
    parts = re.split(r"\n\s*\n|(?<=[.!?;])\s+(?=[A-Z*_(\[`])|;\s", text)
    return [" ".join(p.split()) for p in parts if p.strip()]


def _candidates(table: pd.DataFrame, name: str, sentence: str) -> pd.DataFrame:
    rows = table[table["hypothesis"] == name]
    fixed = rows["claim"].str.contains("fixed")
    rows = rows[fixed] if "fixed" in sentence else rows[~fixed]
    batch, none = bool(BATCH.search(sentence)), bool(NONE.search(sentence))
    if batch != none and rows["claim"].str.contains("norm=").any():
        rows = rows[rows["claim"].str.contains("norm=batch" if batch else "norm=none")]
    return rows


def _word_for(sentence: str, at: int) -> re.Match[str] | None:
    words = list(WORD.finditer(sentence))
    after = [w for w in words if w.start() >= at]
    before = [w for w in words if w.end() <= at]
    return after[0] if after else (before[-1] if before else None)


def sentence_disagreements(text: str, table: pd.DataFrame, where: str) -> tuple[list[str], int]:
    """A claim name and a verdict word in one sentence that disagree with the CSV."""
    wrong, checked = [], 0
    for sentence in sentences(text):
        bullet = re.match(r"- \*\*([^*]+)\*\* ", sentence)
        if bullet and bullet.group(1) in set(table["hypothesis"]):  # a generated bullet: bullet_disagreements
            continue
        for name in NAME.finditer(sentence):
            word = _word_for(sentence, name.end())
            rows = _candidates(table, name.group(), sentence)
            if word is None or rows.empty:
                continue
            raw = re.search(r"\braw\b[\s*:a-z]{0,12}$", sentence[: word.start()], re.IGNORECASE)
            column = "verdict" if raw else "decision"
            checked += 1
            if not all(_same(word.group(), d) for d in rows[column]):
                wrong.append(f"{where}: {name.group()} reads {word.group()!r} in {sentence[:160]!r}; the CSV's "
                             f"{column}: {sorted(set(map(decision_words, rows[column])))}")  # fmt: skip
    return wrong, checked


# --- the checks


def notebook_disagreements(path: Path) -> tuple[list[str], int]:
    """Every disagreement between a notebook's words and its verdict CSV, and how many statements were checked."""
    cells = _cells(path)
    name = _logged_csv(cells)
    own = _csv(name)
    others = [_csv(p.stem) for p in sorted(FIGURES.glob("verdicts*.csv")) if p.stem != name]
    wrong, checked = table_disagreements(cells, [own, *others])
    every = pd.concat([own, *others], ignore_index=True)  # bullets of other notebooks' rows (04 shows 05's)
    for index, cell in enumerate(cells):
        texts = [_text(cell)] if cell["cell_type"] == "markdown" else [
            "".join(o.get("data", {}).get("text/markdown", "")) for o in cell.get("outputs", [])]  # fmt: skip
        for text in texts:
            for found, n in (bullet_disagreements(text, every, f"cell {index}"),
                             sentence_disagreements(text, own, f"cell {index}")):  # fmt: skip
                wrong, checked = wrong + found, checked + n
    return wrong, checked


WITH_CSV = [p for p in NOTEBOOKS if _logged_csv(_cells(p))]


def test_the_notebooks_that_log_verdicts_are_all_checked():
    assert [p.stem for p in WITH_CSV] == [
        "02_norm_dropout", "02b_dropout_bn", "03_conv_blocks", "04_analysis", "05_budget_and_search", "06_final_model"
    ]  # fmt: skip


@pytest.mark.parametrize("path", WITH_CSV, ids=[p.stem for p in WITH_CSV])
def test_a_notebooks_words_say_the_decisions_of_its_csv(path):
    wrong, checked = notebook_disagreements(path)
    assert checked > 0, "nothing was checked: the parser no longer finds this notebook's verdicts"
    assert wrong == [], "\n".join(wrong)


def test_the_readmes_findings_say_the_decisions_of_the_whole_study():
    text = (ROOT / "README.md").read_text(encoding="utf-8").split("## What we found", 1)[1].split("\n## ", 1)[0]
    wrong, checked = sentence_disagreements(text, _csv("verdicts"), "README")
    assert checked >= 6, "the findings name too few claims (H1a ... H3b) next to their decisions to be checked"
    assert wrong == [], "\n".join(wrong)


def test_the_checks_catch_what_they_are_for():
    """Each check fails on a planted disagreement (so none can pass by reading nothing)."""
    table = _csv("verdicts_02")
    assert sentence_disagreements("BatchNorm widened the range (H2a, not shown).", table, "x")[0]
    assert not sentence_disagreements("BatchNorm widened the range (H2a, supported).", table, "x")[0]
    assert sentence_disagreements("H1a with BatchNorm is contradicted.", table, "x")[0]
    assert not sentence_disagreements("H1a without normalization: raw *contradicted*.", table, "x")[0]
    row = table[table["hypothesis"] == "H2a"].iloc[0]
    bullet = f"- **H2a** {row['claim']} ({row['budget']}, 6 seeds): +1.46 decades; raw: *supported*, Holm: **{{}}**"
    assert bullet_disagreements(bullet.format("not shown"), table, "x")[0]
    assert not bullet_disagreements(bullet.format("supported"), table, "x")[0]


def test_the_budget_word_is_read_as_itself_not_as_any_withheld_decision():
    """study v5's "not decided: budget" must agree only with that decision (not with another withheld one)."""
    table = _csv("verdicts_02")
    h2a = table["hypothesis"] == "H2a"
    budget = table.assign(decision=table["decision"].where(~h2a, "not decided: budget"))
    edge = table.assign(decision=table["decision"].where(~h2a, "not decided: tuning range"))
    text = "BatchNorm widened the range (H2a, not decided: budget)."
    assert not sentence_disagreements(text, budget, "x")[0]
    assert sentence_disagreements(text, edge, "x")[0]
    assert sentence_disagreements(text, table, "x")[0]  # the committed (v4) decision: supported

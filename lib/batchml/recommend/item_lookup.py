"""Items by source id or title (case-insensitive, extra spaces ignored), with "did you mean"
suggestions for a title that matches nothing; used by fold-in files, the job's fold-in report and
the terminal query."""
from __future__ import annotations

import difflib
import re
from typing import Iterable

import numpy as np
import pandas as pd

from batchml.schema import ITEM_COL, ITEM_ID_COL, TITLE_COL, YEAR_COL


def _norm(text: str) -> str:
    return re.sub(r"\s+", " ", str(text)).strip().casefold()


class ItemLookup:
    """Find items by source id or title (case-insensitive), with "did you mean" suggestions.

    Parameters
    ----------
    items_pdf : ``item_idx``, ``item_id`` and optionally ``title``, ``year``.
    """

    def __init__(self, items_pdf: pd.DataFrame):
        self.items = items_pdf.reset_index(drop=True)
        self._by_id = {str(v): int(i) for v, i in zip(self.items[ITEM_ID_COL], self.items[ITEM_COL])}
        self._by_title: dict[str, list[int]] = {}
        titles = self.items[TITLE_COL] if TITLE_COL in self.items.columns else []
        for t, i in zip(titles, self.items[ITEM_COL]):
            if isinstance(t, str):
                self._by_title.setdefault(_norm(t), []).append(int(i))
        self._titles = {_norm(t): t for t in titles if isinstance(t, str)}

    def by_id(self, item_id: str) -> list[int]:
        """The item with source id ``item_id`` (a list of one), or an empty list."""
        key = str(item_id).strip()
        return [self._by_id[key]] if key in self._by_id else []

    def by_title(self, title: str) -> list[int]:
        """Item indices whose title equals ``title`` ignoring case and extra spaces."""
        return list(self._by_title.get(_norm(title), []))

    def by_id_or_title(self, key: str) -> list[int]:
        """The item with source id ``key``, else the items with that title."""
        return self.by_id(key) or self.by_title(key)

    def suggestions(self, text: str, n: int = 5) -> list[str]:
        """Titles close to ``text``: titles containing it first, then difflib's close matches."""
        q = _norm(text)
        if not q:
            return []
        contains = sorted((t for k, t in self._titles.items() if q in k), key=len)[:n]
        close = [self._titles[k] for k in difflib.get_close_matches(q, list(self._titles), n=n,
                                                                    cutoff=0.6)]
        out: list[str] = []
        for t in contains + close:
            if t not in out:
                out.append(t)
        return out[:n]

    def not_found_message(self, text: str, what: str = "title") -> str:
        """'no such title "x"; did you mean: ...' text."""
        sugg = self.suggestions(text)
        msg = f'no such {what} "{text}"'
        return msg + (f"; did you mean: {'; '.join(repr(s) for s in sugg)}?" if sugg else "")

    def describe(self, item_idx: Iterable[int]) -> pd.DataFrame:
        """``item_idx``, ``item_id``, ``title`` (and ``year``) of the given items, in that order."""
        cols = [c for c in (ITEM_COL, ITEM_ID_COL, TITLE_COL, YEAR_COL) if c in self.items.columns]
        order = pd.DataFrame({ITEM_COL: np.asarray(list(item_idx), dtype=np.int64)})
        return order.merge(self.items[cols].astype({ITEM_COL: np.int64}), on=ITEM_COL, how="left")

"""An independent plain-Python reading of Kaggle Netflix CSV files: the oracle for the Spark reader."""
from __future__ import annotations

from pathlib import Path

from movielens_reference import parse_ratings as _parse_ratings
from movielens_reference import parse_titles as _parse_titles

MOVIE_RX = r'\s*([0-9]+)\s*,\s*([0-9]{4}|NULL|)\s*,(.*)'


def parse_ratings(path: Path):
    """(data, rejects, kinds) of ``Netflix_Dataset_Rating.csv``; data rows (line, user, item,
    rating, None)."""
    return _parse_ratings(path, ",", ("user", "rating", "item"), "User_ID,Rating,Movie_ID")


def parse_movies(path: Path):
    """({movie_id: (name, year)}, rejected lines, kinds) of ``Netflix_Dataset_Movie.csv``."""
    return _parse_titles(path, MOVIE_RX, "Movie_ID,Year,Name", "utf-8", True, year_group=2, title_group=3)

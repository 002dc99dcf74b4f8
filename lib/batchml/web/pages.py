"""The HTML of the web page: Jinja templates (names end in ``.html`` so Flask autoescapes every
value), plain HTML forms and links, no JavaScript."""
from __future__ import annotations

BASE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{% block title %}batchml{% endblock %}</title>
<style>
 body { font-family: system-ui, sans-serif; max-width: 60rem; margin: 1.5rem auto; padding: 0 1rem; color: #222; }
 header { display: flex; gap: 1.2rem; align-items: baseline; border-bottom: 1px solid #ccc; padding-bottom: .6rem; }
 header a.home { font-weight: bold; font-size: 1.2rem; text-decoration: none; color: #234; }
 table { border-collapse: collapse; margin: .6rem 0; }
 th, td { padding: .25rem .7rem; border-bottom: 1px solid #e4e4e4; text-align: left; }
 td.num { text-align: right; font-variant-numeric: tabular-nums; }
 .message { background: #fff3cd; border: 1px solid #e0c36c; padding: .6rem .9rem; margin: .8rem 0; }
 .note { color: #666; }
 input[type=text] { width: 22rem; } input[type=number] { width: 4rem; }
</style></head>
<body>
<header><a class="home" href="{{ url_for('home') }}">batchml</a>
 <form action="{{ url_for('search') }}" method="get" role="search">
  <input type="text" name="q" value="{{ query or '' }}" placeholder="a title or item id" aria-label="title">
  <button type="submit">Search</button></form>
 <a href="{{ url_for('foldin') }}">Rate a few titles</a></header>
{% for m in messages %}<p class="message" role="alert">{{ m }}</p>{% endfor %}
{% block body %}{% endblock %}
</body></html>
"""

ITEMS_TABLE = """{% macro items_table(rows, columns) %}
<table><tr><th>#</th><th>title</th><th>year</th>{% for c, label in columns %}<th>{{ label }}</th>{% endfor %}</tr>
{% for r in rows %}<tr><td class="num">{{ loop.index }}</td>
 <td><a href="{{ url_for('item', item_id=r.item_id) }}">{{ r.title or '(no title)' }}</a></td>
 <td>{{ r.year or '' }}</td>
 {% for c, label in columns %}<td class="num">{{ r[c] }}</td>{% endfor %}</tr>{% endfor %}
</table>{% endmacro %}
"""

HOME = """{% extends "base.html" %}{% from "items.html" import items_table %}
{% block body %}
<h1>Find a title</h1>
<form action="{{ url_for('search') }}" method="get">
 <input type="text" name="q" placeholder="e.g. the two towers" aria-label="title">
 <button type="submit">Search</button></form>
<form action="{{ url_for('user_lookup') }}" method="get"><p>Recommendations for a user id:
 <input type="text" name="id" aria-label="user id"> <button type="submit">Show</button></p></form>
<h2>Popular</h2>
{% if popular is none %}<p class="note">{{ popular_note }}</p>
{% else %}<p class="note">{{ popular_note }}</p>
{{ items_table(popular, [("n_ratings", "ratings"), ("mean_rating", "mean"), ("shrunk_mean", "shrunk mean")]) }}{% endif %}
{% endblock %}
"""

SEARCH = """{% extends "base.html" %}{% block title %}search: {{ query }}{% endblock %}
{% block body %}
<h1>Titles matching “{{ query }}”</h1>
{% if rows %}<ul>{% for r in rows %}
 <li><a href="{{ url_for('item', item_id=r.item_id) }}">{{ r.title }}</a>{% if r.year %} ({{ r.year }}){% endif %}</li>
{% endfor %}</ul>{% endif %}
{% if suggestions %}<p>Did you mean:</p><ul>{% for t in suggestions %}
 <li><a href="{{ url_for('search', q=t) }}">{{ t }}</a></li>{% endfor %}</ul>{% endif %}
{% endblock %}
"""

ITEM = """{% extends "base.html" %}{% from "items.html" import items_table %}
{% block title %}{{ item.title }}{% endblock %}
{% block body %}
<h1>{{ item.title or '(no title)' }}{% if item.year %} ({{ item.year }}){% endif %}</h1>
<p class="note">item id {{ item.item_id }}</p>
<h2>Similar titles</h2>
{% if similar is none %}<p class="note">{{ similar_note }}</p>
{% elif not similar %}<p class="note">No similar titles stored for this item.</p>
{% else %}{{ items_table(similar, [("similarity", "similarity"), ("co_count", "rated by both")]) }}{% endif %}
{% endblock %}
"""

USER = """{% extends "base.html" %}{% from "items.html" import items_table %}
{% block title %}user {{ user_id }}{% endblock %}
{% block body %}
<h1>Top {{ rows|length }} for user {{ user_id }}</h1>
<p class="note">{{ note }}</p>
{{ items_table(rows, [("score", "score")]) }}
{% endblock %}
"""

FOLDIN = """{% extends "base.html" %}{% from "items.html" import items_table %}
{% block title %}rate a few titles{% endblock %}
{% block body %}
<h1>Rate a few titles</h1>
<p class="note">Type titles (or item ids) and a rating from {{ lo }} to {{ hi }}; the model folds you
in and recommends at once.</p>
<form action="{{ url_for('foldin') }}" method="post">
<table><tr><th>title</th><th>rating</th></tr>
{% for t, r in entries %}<tr><td><input type="text" name="title" value="{{ t }}" aria-label="title {{ loop.index }}"></td>
 <td><input type="number" name="rating" value="{{ r }}" step="any" aria-label="rating {{ loop.index }}"></td></tr>{% endfor %}
</table><button type="submit">Recommend</button></form>
{% if rated %}<h2>You rated</h2><ul>{% for r in rated %}<li>{{ r.title }} = {{ '%g'|format(r.rating) }}</li>{% endfor %}</ul>
<h2>Recommended for you</h2>
{{ items_table(rows, [("score", "score")]) }}{% endif %}
{% endblock %}
"""

ERROR = """{% extends "base.html" %}{% block title %}{{ heading }}{% endblock %}
{% block body %}<h1>{{ heading }}</h1>{% endblock %}
"""

TEMPLATES = {"base.html": BASE, "items.html": ITEMS_TABLE, "home.html": HOME, "search.html": SEARCH,
             "item.html": ITEM, "user.html": USER, "foldin.html": FOLDIN, "error.html": ERROR}

"""The web page: similar items, a user's recommendations, fold-in and the popular list, read from
job outputs with pyarrow (no Spark).

    python -m batchml.web --dataset DIR --model DIR --similar DIR [--recs DIR] [--host H] [--port P]

Modules
-------
:mod:`~batchml.web.pages`   the HTML templates (Jinja, autoescaped)
:mod:`~batchml.web.app`     the Flask app: routes over a :class:`batchml.catalog.Catalog`
:mod:`~batchml.web.server`  flags, config and the WSGI server (waitress)
"""

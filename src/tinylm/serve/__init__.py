"""``tinylm serve``: the playground page and its JSON API (``app``), served from ``static/``."""

"""Look inside a model: the numbers behind the pictures (``probe``) and the pictures (``plots``)."""

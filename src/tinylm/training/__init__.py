"""Training: the loop (``trainer``), the run directory (``rundir``), DDP (``distributed``) and a
whole run from a config (``run``)."""

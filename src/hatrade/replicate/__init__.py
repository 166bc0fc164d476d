"""``hatrade replicate``: every number and figure of the paper, as a report."""

"""Components of the ensemble bundle: load trained members, feed each its own input, combine, report."""

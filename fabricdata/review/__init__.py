"""Closing the loop: a run's predictions into FiftyOne, evaluation, the saved views of its mistakes, the report,
and the table of runs."""

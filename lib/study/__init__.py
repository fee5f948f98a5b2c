"""The worked study of H1-H3: the hypotheses' tests, the final model, the budgets and the notebook runner.

Rooms: ``analysis`` (verdicts of the hypotheses from the runs), ``profiles`` (smoke / quick / full / deep
budgets), ``runner`` (``python -m lib study``: the numbered notebooks with papermill).

What this is not: the tool. A student's own study uses the course library (``lib``) and the engine
(``lib.engine``) and needs nothing from here; this room imports both and nothing imports it but the CLI.
"""

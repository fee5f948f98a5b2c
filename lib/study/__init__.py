"""The worked study of H1-H3: the hypotheses' tests, the final model, the budgets and the notebook runner.

Modules, one job each: ``registry`` (every claim as a record: its arms, direction, family and runs; the
families and their sizes derive from it), ``inputs`` (the runs a notebook reads, the budget line), ``verdicts``
(verdict rows, Holm, the words), ``contrast`` (the rule that compares two arms of a claim), ``hypotheses`` (the
rules of H1-H3 and the variance shift, ``grid_verdicts``), ``final`` (choosing the final
model), ``finalists`` (study v5's declared candidates of the final model, their tuning and cost),
``comparisons`` (05: budget interaction, overfitting, search), ``figures`` (the study's figures),
``ledger`` (the test-set readings), ``profiles`` (smoke / quick / full / deep budgets), ``runner``
(``python -m lib study``: the numbered notebooks with papermill); ``analysis`` is the notebooks' facade.

What this is not: the tool. A student's own study uses the course library (``lib``), the engine
(``lib.engine``) and the report (``lib.report``) and needs nothing from here; this room imports those three and
nothing imports it but the CLI.
"""

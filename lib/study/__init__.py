"""The worked study of H1-H3: the hypotheses' tests, the final model, the budgets and the notebook runner.

Modules, one job each: ``inputs`` (the runs a notebook reads, the budget line), ``verdicts`` (verdict rows,
families, Holm, the words), ``hypotheses`` (H1-H3, the variance shift), ``final`` (choosing the final
model), ``comparisons`` (05: budget interaction, overfitting, search), ``figures`` (the study's figures),
``ledger`` (the test-set readings), ``profiles`` (smoke / quick / full / deep budgets), ``runner``
(``python -m lib study``: the numbered notebooks with papermill); ``analysis`` is the notebooks' facade.

What this is not: the tool. A student's own study uses the course library (``lib``), the engine
(``lib.engine``) and the report (``lib.report``) and needs nothing from here; this room imports those three and
nothing imports it but the CLI.
"""

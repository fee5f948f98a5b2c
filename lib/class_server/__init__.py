"""The class server: one tracking server with logins that a whole class shares (``make class-server``).

``python -m lib.class_server`` starts a private PostgreSQL cluster, MLflow's basic-auth server on it and one
account per student of a roster. Modules, one job each: ``layout`` (the data folder), ``processes``
(child processes), ``database`` (PostgreSQL), ``accounts`` (roster, passwords, users), ``server`` (MLflow
with basic-auth), ``loadtest`` (N writers at once) and ``cli`` (the command line; see its docstring).

What this is not: part of a study. It is an operations program beside the library; it imports only
``lib.paths`` and ``lib.tracking`` from the course library.
"""

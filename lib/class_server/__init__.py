"""The class server: one tracking server with logins that a whole class shares (``make class-server``).

``python -m lib.class_server`` starts a private PostgreSQL cluster, MLflow's basic-auth server on it and one
account per student of a roster; ``lib.class_server.server`` holds it (see its docstring).

What this is not: part of a study. It is an operations program beside the library; it imports only
``lib.paths`` and ``lib.tracking`` from the course library.
"""

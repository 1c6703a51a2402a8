"""The embedded sandbox AWS: moto in server mode on localhost, plus the demo estate.

Development and test tooling only; nothing in ``plugins/`` or ``dags/`` imports it.
"""

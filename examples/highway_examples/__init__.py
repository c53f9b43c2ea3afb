"""Example Highway plugins (not part of the ``highway`` package; see docs/plugins.md).

Load one with ``HIGHWAY_PLUGINS=highway_examples.contest_conversion`` and ``examples/`` on
``PYTHONPATH`` (or ``pip install`` a package of your own that holds such modules).
"""

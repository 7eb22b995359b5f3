"""spleen_helpers: the tested helper package behind the spleen-course notebooks.

Modules, in the direction data flows (each imports only modules listed before it):
``errors``/``fileio``/``config`` → ``data``/``dicom``/``synthetic`` → ``transforms`` →
``model`` → ``checkpoint``/``train`` → ``evaluate`` → ``viz``; ``cli`` and ``course`` (the
papermill runner) sit on top.
"""

__version__ = "0.1.0"

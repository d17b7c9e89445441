"""``python -m codec`` runs the ``inrc`` command line."""
from .cli import entry

entry()

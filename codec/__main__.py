"""``python -m codec`` runs the ``inrc`` command line."""
from .cli import entry

if __name__ == "__main__":
    entry()

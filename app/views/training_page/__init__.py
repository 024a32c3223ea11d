"""The Training page, one module per part of it (see page.py for the whole)."""

"""Training: start a run, watch it learn, compare runs, look into one and put its model to work.

The trainer runs as its own process (training.launcher); this page only reads the run folders, so
a reload or a second tab finds the running job again, and a crashed trainer never takes the app down.
The page's parts are in app/views/training_page/ (page.py puts them together).
"""

from __future__ import annotations

from app.views.training_page.page import main

if __name__ == "__main__":  # Streamlit runs pages as __main__
    main()

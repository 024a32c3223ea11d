import sys

from fer_core.cli import main

if __name__ == "__main__":  # not when a batch worker process re-imports the main module
    sys.exit(main())

"""`python -m cellops`: the `cellops` command."""

from .cli import main

if __name__ == "__main__":
    main()

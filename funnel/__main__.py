"""``python -m funnel`` runs the CLI."""

from funnel.cli import main

if __name__ == "__main__":
    main()

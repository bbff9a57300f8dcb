"""``python -m archkd`` runs the CLI."""
from archkd.cli import main

main()

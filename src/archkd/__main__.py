"""``python -m archkd`` (and ``torchrun --nproc-per-node N -m archkd distill ...``) runs the command line."""
from archkd.cli import main

main()

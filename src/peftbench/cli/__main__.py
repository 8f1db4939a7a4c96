"""`python -m peftbench.cli`: the command line."""

from peftbench.cli import main

main()

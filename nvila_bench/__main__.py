"""`python -m nvila_bench` (and `torchrun -m nvila_bench`): the CLI."""

import sys

from nvila_bench.cli import main

sys.exit(main())

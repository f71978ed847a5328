"""``python -m bench.naive --port P --database-url URL --jwt-secret S``."""

from bench.naive.app import main

main()

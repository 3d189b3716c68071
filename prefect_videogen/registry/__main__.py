"""``python -m prefect_videogen.registry --markdown`` prints the README's provider table."""

import sys

from prefect_videogen.registry import main

sys.exit(main())

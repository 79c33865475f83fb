import sys

from lopt.cli import main

sys.exit(main())

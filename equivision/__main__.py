import sys

from equivision.cli import main

sys.exit(main())

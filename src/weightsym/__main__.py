import sys

from weightsym.cli import main

sys.exit(main())

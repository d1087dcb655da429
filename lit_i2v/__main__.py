import sys

from lit_i2v.cli import main

sys.exit(main())

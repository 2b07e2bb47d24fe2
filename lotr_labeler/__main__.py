import sys

from lotr_labeler.cli import main

sys.exit(main())

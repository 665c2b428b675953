"""``python -m feph_finetune``: see :mod:`feph_finetune.cli`."""

import sys

from feph_finetune.cli import main

sys.exit(main())

import sys

from robustbench_mixup.cli.dispatch import main

sys.exit(main())

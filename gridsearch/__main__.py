"""``python -m gridsearch``."""

from gridsearch.cli import exit_now, main

exit_now(main())

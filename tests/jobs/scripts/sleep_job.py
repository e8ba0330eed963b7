"""A user script that sleeps (to be cancelled)."""

import time

time.sleep(300)

"""The user posting emulation: the original's user_posting_emulation.py (``emulator``), the watch
on which acknowledged records have landed (``landing``), and what a topic's materialisation
records of an emulation batch (``batch_metadata``)."""

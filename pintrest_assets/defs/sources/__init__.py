"""Sources: the three tables of the posts database that the emulator draws from."""

"""Stopping the process groups a benchmark starts."""

import os
import signal
import subprocess


def stop_process(process: subprocess.Popen, timeout: float) -> None:
    """Ctrl-C to the process's group (started with ``start_new_session``); SIGKILL if it is not
    gone within ``timeout`` seconds."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGINT)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
